"""Reads an exported file with libraries Argus did not write and prints one JSON object per
event, in file order, in the shape `GET /query/events` answers:
{event_id, stream_id, timestamp (RFC 3339, UTC, milliseconds), event_type, category,
session_id, data, metadata}. Parquet: pyarrow; Avro: fastavro; CSV and NDJSON: the standard
library (gzip included). The first line is {"schema": ...}: the column types as the reader
sees them, so the test can check timestamps are typed.

usage: export_reader.py FORMAT COMPRESSION PATH
"""
import csv
import datetime
import gzip
import io
import json
import os
import sys


def rfc3339(value):
    if isinstance(value, str):
        return value
    value = value.astimezone(datetime.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parsed(text):
    # JSON text in CSV, Parquet and Avro; already a value in NDJSON.
    if not isinstance(text, str):
        return text
    return None if text == "" else json.loads(text)


def event(row):
    return {
        "event_id": row["event_id"],
        "stream_id": row["stream_id"],
        "timestamp": rfc3339(row["timestamp"]),
        "event_type": row["event_type"],
        "category": row["category"] or None,
        "session_id": row["session_id"] or None,
        "data": parsed(row["data"]),
        "metadata": parsed(row["metadata"]),
    }


def main():
    fmt, compression, path = sys.argv[1:4]
    raw = open(path, "rb").read()
    if fmt in ("ndjson", "csv") and compression == "gzip":
        raw = gzip.decompress(raw)
    if fmt == "parquet":
        import pyarrow
        import pyarrow.parquet as pq

        # One thread: the suite runs many readers at once on a small machine.
        pyarrow.set_cpu_count(1)
        pyarrow.set_io_thread_count(1)
        table = pq.read_table(io.BytesIO(raw), use_threads=False)
        print(json.dumps({"schema": {f.name: str(f.type) for f in table.schema}}))
        rows = table.to_pylist()
        for row in rows:
            print(json.dumps(event(row)))
    elif fmt == "avro":
        import fastavro

        reader = fastavro.reader(io.BytesIO(raw))
        schema = reader.writer_schema
        print(json.dumps({"schema": {f["name"]: f["type"] for f in schema["fields"]}, "codec": reader.codec}))
        for row in reader:
            print(json.dumps(event(row)))
    elif fmt == "csv":
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8"), newline=""))
        print(json.dumps({"schema": {name: "string" for name in reader.fieldnames}}))
        for row in reader:
            print(json.dumps(event(row)))
    elif fmt == "ndjson":
        print(json.dumps({"schema": "json"}))
        for line in raw.decode("utf-8").splitlines():
            print(json.dumps(event(json.loads(line))))
    else:
        sys.exit(f"unknown format {fmt}")


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    # Skip interpreter teardown: pyarrow's thread pools have aborted there ("terminate called
    # without an active exception") on a loaded machine, after the output was complete.
    os._exit(0)
