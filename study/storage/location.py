"""Where a study lives: a local folder, an NFS path, `s3://`, `gs://` (pyarrow filesystems).

A study is a URI or a path, resolved the way Ray resolves `RunConfig.storage_path`
(`pyarrow.fs.FileSystem.from_uri`), so the study's own files and Ray's experiment
state sit on the same storage and every node of a cluster reaches both the same way.
(`study/data/storage.py` is something else: the prepared dataset format on one disk.)

Writes are whole-object: a local file is written to a temporary name and renamed, an
object store replaces an object atomically on upload, so a reader never sees half a
file. Credentials and endpoints come from the environment pyarrow reads
(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ... for S3; GOOGLE_APPLICATION_CREDENTIALS for GCS).
Imports pyarrow only, never JAX or Ray: `analysis` reads studies through it.
"""
from __future__ import annotations

import io
import json
import os
import pathlib
import secrets
import tempfile
from typing import Any, Mapping

import pyarrow.fs as pafs


class StorageError(ValueError):
    """A study location that cannot be used (one line, names the location)."""


def _is_uri(value: str) -> bool:
    return "://" in value


class Location:
    """A file or folder inside a study's storage: (pyarrow filesystem, path on it)."""

    def __init__(self, fs: pafs.FileSystem, path: str, scheme: str = ""):
        self.fs = fs
        self.path = path.rstrip("/") or "/"
        self.scheme = scheme  # "" for a local path, else "s3", "gs", ...

    @classmethod
    def parse(cls, value: "str | os.PathLike | Location") -> "Location":
        """A path or URI -> Location; a bad URI is a one-line StorageError."""
        if isinstance(value, Location):
            return value
        text = str(value)
        if not text:
            raise StorageError("an empty study location is not allowed; give a folder or a URI like s3://bucket/study")
        if _is_uri(text) and not text.startswith("file://"):
            try:
                fs, path = pafs.FileSystem.from_uri(text)
            except Exception as error:  # pyarrow: ArrowInvalid, OSError, ...
                raise StorageError(f"study location {text!r} cannot be opened: {str(error).splitlines()[0]}") from None
            return cls(fs, path, text.split("://", 1)[0])
        if text.startswith("file://"):
            text = text[len("file://"):]
        return cls(pafs.LocalFileSystem(), str(pathlib.Path(text).expanduser().absolute()))

    # ------------------------------------------------------------------ naming
    @property
    def is_local(self) -> bool:
        return not self.scheme

    @property
    def local_path(self) -> pathlib.Path:
        if not self.is_local:
            raise StorageError(f"{self} is not a local path")
        return pathlib.Path(self.path)

    @property
    def uri(self) -> str:
        return self.path if self.is_local else f"{self.scheme}://{self.path}"

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def __truediv__(self, part: str) -> "Location":
        return Location(self.fs, f"{self.path}/{part}", self.scheme)

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    # ------------------------------------------------------------------ queries
    def _info(self) -> pafs.FileInfo:
        return self.fs.get_file_info(self.path)

    def exists(self) -> bool:
        return self._info().type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self._info().type == pafs.FileType.Directory

    def children(self) -> list[str]:
        """Names of the direct entries of this folder (empty if it does not exist)."""
        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=False)
        return sorted(info.base_name for info in self.fs.get_file_info(selector))

    def disk_bytes(self) -> int:
        """Bytes of every file under this folder (or of this file)."""
        info = self._info()
        if info.type == pafs.FileType.File:
            return int(info.size or 0)
        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=True)
        return int(sum(i.size or 0 for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File))

    # ------------------------------------------------------------------ reading
    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as handle:
            return handle.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def read_json(self) -> Any:
        return json.loads(self.read_text())

    def read_parquet(self):
        import pandas as pd

        return pd.read_parquet(io.BytesIO(self.read_bytes()))

    # ------------------------------------------------------------------ writing
    def mkdir(self) -> None:
        self.fs.create_dir(self.path, recursive=True)

    def write_bytes(self, data: bytes) -> None:
        """Whole-file write: temporary file + rename locally, one PUT on an object store."""
        if self.is_local:
            path = self.local_path
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
            return
        with self.fs.open_output_stream(self.path) as handle:
            handle.write(data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def write_json(self, data: Mapping[str, Any] | list) -> None:
        self.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))

    def write_parquet(self, frame) -> None:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        self.write_bytes(buffer.getvalue())

    def delete(self) -> None:
        """Removes this file or folder (nothing if it does not exist)."""
        info = self._info()
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path)
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(self.path)

    # ------------------------------------------------------------------ copies
    def upload(self, local: pathlib.Path) -> None:
        """Copies a local file or folder here (replacing what is here)."""
        local = pathlib.Path(local)
        if local.is_dir():
            self.delete()
            self.mkdir()
            pafs.copy_files(str(local), self.path, source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=self.fs)
        else:
            self.write_bytes(local.read_bytes())

    def download(self, local: pathlib.Path) -> None:
        """Copies this file or folder to a local path."""
        local = pathlib.Path(local)
        if self.is_dir():
            local.mkdir(parents=True, exist_ok=True)
            pafs.copy_files(self.path, str(local), source_filesystem=self.fs,
                            destination_filesystem=pafs.LocalFileSystem())
        else:
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(self.read_bytes())


def at(value: "str | os.PathLike | Location") -> Location:
    """Shorthand for Location.parse."""
    return Location.parse(value)


def local_cache(location: Location, purpose: str = "studies") -> pathlib.Path:
    """A local folder standing for a remote location (the location's own path if local).

    Under $GAN_STUDY_CACHE (else ~/.cache/gan_study)/<purpose>/<scheme>/<path>, so two
    studies never share a cache folder and a rerun reuses the same one.
    """
    if location.is_local:
        return location.local_path
    root = pathlib.Path(os.environ.get("GAN_STUDY_CACHE") or "~/.cache/gan_study").expanduser()
    return root / purpose / location.scheme / location.path.lstrip("/")


def cluster_node_ids() -> list[str]:
    """Alive Ray nodes of the connected cluster."""
    import ray  # only on a cluster: storage is also read by analysis, which never loads Ray

    return [node["NodeID"] for node in ray.nodes() if node.get("Alive")]


def check_reachable(location: Location) -> None:
    """On a multi-node Ray cluster, proves every node reads the study's storage.

    A local path on a cluster is only usable when every node mounts it (NFS): the driver
    writes a marker with a random token and a zero-CPU task pinned to each node reads it
    back. Any node that cannot is a one-line StorageError, raised before a trial starts.
    Object stores (s3://, gs://) are checked the same way, so missing credentials on a
    worker are found here instead of in every trial.
    """
    import ray  # only on a cluster (see cluster_node_ids)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = cluster_node_ids()
    if len(nodes) <= 1 and location.is_local:
        return
    token = secrets.token_hex(8)
    marker = location / f".reachable-{token}"
    marker.write_text(token)

    @ray.remote(num_cpus=0, max_retries=0)
    def read_back(uri: str) -> str:
        try:
            return Location.parse(uri).read_text()
        except Exception as error:  # reported back, not raised: the driver names the node
            return f"unreadable: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"

    try:
        answers = ray.get([
            read_back.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(marker.uri)
            for node in nodes
        ], timeout=120)
    finally:
        marker.delete()
    blind = [(node, answer) for node, answer in zip(nodes, answers) if answer != token]
    if blind:
        node, answer = blind[0]
        hint = ("a local folder on a multi-node cluster must be mounted on every node (NFS); "
                "or use an object store URI like s3://bucket/study") if location.is_local else "check its credentials there"
        raise StorageError(f"--out {location}: {len(blind)} of {len(nodes)} Ray node(s) cannot read it "
                           f"(node {node[:12]}: {answer[:120]}); {hint}")
