"""A copy of each training's epoch checkpoint in a shared store, for preemptible GPU workers.

A training keeps its checkpoint in the checkpoint folder of the checkout it runs in; a worker
that dies (preemption, OOM kill, a lost host) takes that folder with it. With
IMGFLOW_CHECKPOINT_URL set (`s3://bucket/prefix`, or `file:///shared/path` for a shared disk),
every completed epoch's checkpoint folder is also uploaded there, under a key derived from the
checkpoint's fingerprint (params, seed, prepared data), and a training that starts without a
local checkpoint downloads the newest one: a retry on a different host resumes from the last
completed epoch. The embedded default (no URL) keeps checkpoints local only.

Each upload goes to its own `epoch-<n>/` prefix and only then is `latest.json` pointed at it,
so a reader sees a whole epoch or the previous one, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from tasks.atomic import write_bytes
from tasks.settings import Settings

LATEST = "latest.json"
# Written by train.open_checkpoint from the fingerprint itself, never copied between hosts.
LOCAL_ONLY = {"fingerprint.txt"}


class CheckpointStoreError(ValueError):
    """IMGFLOW_CHECKPOINT_URL is malformed or the store refused an operation."""


class Blobs(Protocol):
    """The few object-store operations the checkpoint copy needs."""

    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes | None: ...  # None: no such object
    def delete_prefix(self, prefix: str) -> None: ...


@dataclass(frozen=True)
class DirectoryBlobs:
    """Objects as files under a folder (a shared disk, and the store of the unit tests)."""

    root: Path

    def put(self, key: str, data: bytes) -> None:
        write_bytes(self.root / key, data)

    def get(self, key: str) -> bytes | None:
        path = self.root / key
        return path.read_bytes() if path.is_file() else None

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self.root / prefix, ignore_errors=True)


@dataclass(frozen=True)
class S3Blobs:
    """Objects in an S3 bucket under a prefix (boto3; keys from the environment or Settings)."""

    client: Any
    bucket: str
    prefix: str

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes | None:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            return None
        return bytes(answer["Body"].read())

    def delete_prefix(self, prefix: str) -> None:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix) + "/"
        )
        for page in pages:
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})


def blobs_from_url(url: str, settings: Settings) -> Blobs:
    """`s3://bucket/prefix` (endpoint IMGFLOW_S3_ENDPOINT, keys AWS_*) or `file:///path`."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return DirectoryBlobs(Path(parts.path))
    if parts.scheme == "s3" and parts.netloc:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint,
            aws_access_key_id=settings.s3_access_key,
            aws_secret_access_key=settings.s3_secret_key,
            region_name="us-east-1",
        )
        return S3Blobs(client, parts.netloc, parts.path.strip("/"))
    raise CheckpointStoreError(
        f"IMGFLOW_CHECKPOINT_URL={url!r}: expected s3://bucket/prefix or file:///path"
    )


def _files(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        hidden = any(part.startswith(".") for part in relative.parts)
        if path.is_file() and not hidden and str(relative) not in LOCAL_ONLY:
            yield path


@dataclass(frozen=True)
class SharedCheckpoint:
    """One training's checkpoint copy: `<model>/<fingerprint digest>/` in a store."""

    blobs: Blobs
    model: str
    fingerprint: str

    @property
    def prefix(self) -> str:
        digest = hashlib.sha256(self.fingerprint.encode()).hexdigest()[:20]
        return f"{self.model}/{digest}"

    def upload(self, directory: Path, epoch: int) -> None:
        """Copy the checkpoint folder as epoch `epoch`, then point latest.json at it."""
        names = []
        for path in _files(directory):
            name = path.relative_to(directory).as_posix()
            self.blobs.put(f"{self.prefix}/epoch-{epoch}/{name}", path.read_bytes())
            names.append(name)
        previous = self.latest_epoch()
        latest = json.dumps({"epoch": epoch, "files": names}).encode()
        self.blobs.put(f"{self.prefix}/{LATEST}", latest)
        if previous is not None and previous != epoch:
            self.blobs.delete_prefix(f"{self.prefix}/epoch-{previous}")

    def latest_epoch(self) -> int | None:
        raw = self.blobs.get(f"{self.prefix}/{LATEST}")
        return None if raw is None else int(json.loads(raw)["epoch"])

    def download(self, directory: Path) -> int | None:
        """Fill `directory` with the newest uploaded epoch; its number, or None if none."""
        raw = self.blobs.get(f"{self.prefix}/{LATEST}")
        if raw is None:
            return None
        latest = json.loads(raw)
        for name in latest["files"]:
            data = self.blobs.get(f"{self.prefix}/epoch-{latest['epoch']}/{name}")
            if data is None:  # a newer upload replaced it meanwhile: take the local state
                return None
            write_bytes(directory / name, data)
        return int(latest["epoch"])

    def discard(self) -> None:
        """The training finished: its checkpoint copy is no longer needed."""
        self.blobs.delete_prefix(self.prefix)


def shared_checkpoint(model: str, fingerprint: str, settings: Settings) -> SharedCheckpoint | None:
    """The configured store's copy for this training, or None when none is configured."""
    if not settings.checkpoint_url:
        return None
    return SharedCheckpoint(blobs_from_url(settings.checkpoint_url, settings), model, fingerprint)
