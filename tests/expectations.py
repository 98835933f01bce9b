"""What each fixture in events/ must produce: (HTTP status, error code or None).

Both the functional tests (pipeline in-process) and the Lambda tests (through the
Runtime Interface Emulator) check every file in events/ against this table, and a
fixture missing from it fails the tests.
"""

EXPECTED = {
    "url.json": (200, None),
    "base64.json": (200, None),
    "rest-url.json": (200, None),
    "rest-binary.json": (200, None),
    "rest-model.json": (200, None),
    "httpapi-base64.json": (200, None),
    "httpapi-binary.json": (200, None),
    "bad-empty.json": (400, "bad_request"),
    "bad-both-fields.json": (400, "bad_request"),
    "bad-base64.json": (400, "bad_request"),
    "bad-not-an-image.json": (415, "unsupported_media"),
    "bad-truncated-image.json": (422, "corrupt_image"),
    "bad-top-k.json": (400, "bad_request"),
    "bad-url-scheme.json": (400, "bad_request"),
    "bad-url-metadata.json": (403, "blocked_url"),
    "rest-bad-json.json": (400, "bad_request"),
    "rest-bad-content-type.json": (415, "unsupported_media"),
    "httpapi-bad-method.json": (405, "method_not_allowed"),
}

# Events whose photo is the cat: the top-1 label must be a domestic cat class.
CAT_EVENTS = ("url.json", "base64.json", "rest-url.json", "rest-binary.json", "httpapi-base64.json", "httpapi-binary.json")


def check_event_response(name: str, status: int, body: dict, labels) -> None:
    """Assert that fixture ``name`` got its expected status and code (no traceback), and that a cat
    photo's top-1 label is one of the domestic cats among ``labels`` (the model card's labels)."""
    import json

    from support import CAT_CLASS_INDICES

    expected_status, expected_code = EXPECTED[name]
    assert status == expected_status, body
    if expected_code:
        assert body["error"]["code"] == expected_code
        assert "Traceback" not in json.dumps(body)
    if name in CAT_EVENTS:
        cat_labels = {labels[i] for i in CAT_CLASS_INDICES}
        assert body["predictions"][0]["label"] in cat_labels, body["predictions"]
