"""A stateless record transformation: what an application hands to untrusted logic.

Actions:
  normalize  one record (in a batch: many) {"id", "name", "email", "amount"} ->
             {"id", "name" trimmed and title-cased, "email" lower-cased, "cents" as an int}
             (and "note", trimmed, when the record has one)
  export     JSON lines of records as bytes (any size: one over the frame cap arrives as a
             memfd) -> the normalized records as JSON lines in data/export.jsonl, answered
             as {"$file": "export.jsonl"} so that the result travels outside the frames too
  ping       "pong"
"""

import json

EXPORT_NAME = "export.jsonl"


def _cents(text):
    whole, _, frac = text.strip().partition(".")
    cents = abs(int(whole or "0")) * 100 + int((frac + "00")[:2])
    return -cents if whole.startswith("-") else cents


def normalize(record):
    try:
        out = {
            "id": record["id"],
            "name": " ".join(record["name"].split()).title(),
            "email": record["email"].strip().lower(),
            "cents": _cents(record["amount"]),
        }
    except KeyError as exc:
        raise ValueError(f"normalize takes a record with id, name, email and amount; this one "
                         f"has no {exc}") from None
    if "note" in record:
        out["note"] = record["note"].strip()
    return out


def export(lines):
    # One file, rewritten each time: the data area is quota'd, so the plugin keeps it bounded.
    with open("data/" + EXPORT_NAME, "w", encoding="utf-8") as out:
        for line in bytes(lines).splitlines():
            if line.strip():
                out.write(json.dumps(normalize(json.loads(line)), separators=(",", ":")))
                out.write("\n")
    return {"$file": EXPORT_NAME}


def handle(action, payload):
    if action == "normalize":
        return normalize(payload)
    if action == "export":
        return export(payload)
    if action == "ping":
        return "pong"
    raise ValueError(f"unknown action {action!r}; actions are normalize, export, ping")


def handle_batch(action, items):
    if action == "normalize":
        return [normalize(r) for r in items]
    return [handle(action, item) for item in items]
