"""The typed errors a request can end with, each carrying its HTTP status and code.

Raise these anywhere in the request path; ``handler`` turns them into a response
in exactly one place. Their messages are shown to the caller, so they must never
contain internal addresses, paths or exception text from third-party code.

| error                    | status | code                  |
|--------------------------|--------|-----------------------|
| BadRequestError          | 400    | bad_request           |
| BlockedUrlError          | 403    | blocked_url           |
| NotFoundError            | 404    | not_found             |
| MethodNotAllowedError    | 405    | method_not_allowed    |
| PayloadTooLargeError     | 413    | payload_too_large     |
| UnsupportedMediaError    | 415    | unsupported_media     |
| CorruptImageError        | 422    | corrupt_image         |
| UpstreamError            | 502    | upstream_error        |
| UpstreamTimeoutError     | 504    | upstream_timeout      |
| InternalError            | 500    | internal_error        |
"""

from __future__ import annotations


class ClassifierError(Exception):
    """Base of every error that is answered to the caller."""

    status: int = 500
    code: str = "internal_error"
    headers: tuple[tuple[str, str], ...] = ()  # response headers the status requires (405: Allow)

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequestError(ClassifierError):
    status, code = 400, "bad_request"


class BlockedUrlError(ClassifierError):
    status, code = 403, "blocked_url"


class NotFoundError(ClassifierError):
    status, code = 404, "not_found"


class MethodNotAllowedError(ClassifierError):
    status, code = 405, "method_not_allowed"

    def __init__(self, message: str, allow: str) -> None:
        super().__init__(message)
        self.headers = (("Allow", allow),)  # RFC 9110 15.5.6: a 405 lists the methods the target accepts


class PayloadTooLargeError(ClassifierError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaError(ClassifierError):
    status, code = 415, "unsupported_media"


class CorruptImageError(ClassifierError):
    status, code = 422, "corrupt_image"


class UpstreamError(ClassifierError):
    status, code = 502, "upstream_error"


class UpstreamTimeoutError(ClassifierError):
    status, code = 504, "upstream_timeout"


class InternalError(ClassifierError):
    status, code = 500, "internal_error"

    def __init__(self, message: str = "internal error; see the function's logs") -> None:
        super().__init__(message)
