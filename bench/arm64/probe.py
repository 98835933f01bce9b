"""Helper for check_cpuinfo.sh: run onnxruntime in one process and report what happened.

  probe.py prepare --model M --event E --classifier-dir D --out DIR
      (host, x86_64 venv) decode the sample photo with the function's own code, save the
      input tensor (input.npy) and x86_64 raw logits (reference.npy).
  probe.py run --mode MODE --model M --input input.npy --reference reference.npy [--classifier-dir D]
      (guest, aarch64 under qemu) print one JSON line: which /sys files the process sees,
      onnxruntime version, argmax, and how far the logits are from x86_64's.
      MODE: import | default | threads1 | project
  probe.py table RESULTS_DIR
      (host, stdlib only) print the result table from the per-run files check_cpuinfo.sh wrote.

A crash (abort, segfault) kills the process before the JSON line; check_cpuinfo.sh then
records the exit code and stderr instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

SYS_FILES = (
    "/sys/devices/system/cpu",
    "/sys/devices/system/cpu/possible",
    "/sys/devices/system/cpu/present",
    "/sys/devices/system/cpu/online",
)


def _load_classifier_module(classifier_dir: str):
    sys.path.insert(0, os.path.dirname(os.path.abspath(classifier_dir)))
    from classifier import model  # noqa: PLC0415 - the function's own code, imported late on purpose

    return model


def prepare(args: argparse.Namespace) -> None:
    import base64

    import numpy as np

    sys.path.insert(0, os.path.dirname(os.path.abspath(args.classifier_dir)))
    from classifier.decode import decode_image
    from classifier.model import Classifier
    from classifier.spec import preprocess

    with open(args.event) as f:
        data = base64.b64decode(json.load(f)["image"])
    clf = Classifier.load(args.model, intra_op_threads=1)
    image = decode_image(data, max_pixels=50_000_000)
    tensor = preprocess(image, clf.card.preprocessing)
    raw = clf.session.run([clf.output_name], {clf.input_name: tensor})[0]
    os.makedirs(args.out, exist_ok=True)
    np.save(os.path.join(args.out, "input.npy"), tensor)
    np.save(os.path.join(args.out, "reference.npy"), raw)
    top = clf.top_k(clf.scores(tensor), 3)
    print(json.dumps({"input": list(tensor.shape), "argmax": int(raw.argmax()),
                      "top3": [(p.label, round(p.score, 4)) for p in top]}))


def run(args: argparse.Namespace) -> None:
    seen = {path: os.path.exists(path) for path in SYS_FILES}
    result: dict = {"mode": args.mode, "sees": seen, "cpus": len(os.sched_getaffinity(0))}
    print(json.dumps({"stage": "before-import", **result}), file=sys.stderr, flush=True)

    import numpy as np
    import onnxruntime as ort

    result["ort"] = ort.__version__
    if args.mode == "import":
        result["ok"] = True
        print(json.dumps(result), flush=True)
        return

    x = np.load(args.input)
    if args.mode == "project":
        model = _load_classifier_module(args.classifier_dir)
        clf = model.Classifier.load(args.model)  # the function's session_options, threads from affinity
        session = clf.session
        result["threads"] = f"intra={clf.session.get_session_options().intra_op_num_threads} (session_options)"
        result["top3"] = [(p.label, round(p.score, 4)) for p in clf.top_k(clf.scores(x), 3)]
    else:
        options = ort.SessionOptions()
        if args.mode == "threads1":
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
        session = ort.InferenceSession(args.model, sess_options=options, providers=["CPUExecutionProvider"])
        result["threads"] = "intra=1" if args.mode == "threads1" else "ort default"
    raw = session.run(None, {session.get_inputs()[0].name: x})[0]
    ref = np.load(args.reference)
    result["argmax"] = int(raw.argmax())
    result["argmax_x86"] = int(ref.argmax())
    result["max_abs_diff"] = float(np.abs(raw.astype(np.float64) - ref).max())
    result["ok"] = result["argmax"] == result["argmax_x86"]
    print(json.dumps(result), flush=True)


def _stderr_summary(text: str) -> str:
    """The distinct interesting stderr lines, in order, without the probe's own JSON."""
    keep = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("{") or line in keep:
            continue
        if any(k in line for k in ("cpuinfo", "terminate", "what()", "DefaultLogger", "qemu:", "Segmentation",
                                   "Aborted", "Error", "warning")):
            keep.append(line)
    return " | ".join(keep) if keep else "-"


def table(args: argparse.Namespace) -> None:
    rows = []
    for name in sorted(os.listdir(args.results)):
        if not name.endswith(".meta.json"):
            continue
        base = os.path.join(args.results, name[: -len(".meta.json")])
        with open(base + ".meta.json") as f:
            meta = json.load(f)
        out = open(base + ".stdout").read().strip().splitlines()
        err = open(base + ".stderr").read()
        res = json.loads(out[-1]) if out and out[-1].startswith("{") else {}
        sees = {}
        for line in err.splitlines():
            if line.startswith('{"stage": "before-import"'):
                sees = json.loads(line)["sees"]
        rc = meta["rc"]
        status = "OK" if rc == 0 and res.get("ok") else (f"CRASH rc={rc}" if rc != 0 else "WRONG")
        files = "possible+present" if sees.get("/sys/devices/system/cpu/possible") else (
            "cpu dir, no lists" if sees.get("/sys/devices/system/cpu") else "no cpu dir")
        infer = "-"
        if "argmax" in res:
            infer = f"{res['argmax']} vs {res['argmax_x86']} (|d|max {res['max_abs_diff']:.1e})"
        rows.append((meta["ort"], meta["proc"], meta["sys"], files, meta["mode"], status, infer,
                     _stderr_summary(err)))
    head = ("onnxruntime", "/proc/cpuinfo", "/sys", "guest sees", "mode", "result", "argmax aarch64 vs x86_64",
            "stderr (distinct lines)")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(str(c).replace("|", "/") for c in row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--model", required=True)
    p.add_argument("--event", required=True)
    p.add_argument("--classifier-dir", required=True)
    p.add_argument("--out", required=True)
    r = sub.add_parser("run")
    r.add_argument("--mode", choices=("import", "default", "threads1", "project"), required=True)
    r.add_argument("--model", required=True)
    r.add_argument("--input", required=True)
    r.add_argument("--reference", required=True)
    r.add_argument("--classifier-dir")
    t = sub.add_parser("table")
    t.add_argument("results")
    args = parser.parse_args()
    {"prepare": prepare, "run": run, "table": table}[args.cmd](args)


if __name__ == "__main__":
    main()
