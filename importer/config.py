"""Connection settings: which server, which key, which project.

Sources, first found wins: `--config` / MOVESHELF_CONFIG / ./mvshlf-config.json for the
server and the key file (relative to the config's folder); MOVESHELF_API_KEY overrides
the key file; `--project` / MOVESHELF_PROJECT names the project.
"""

from __future__ import annotations

import ipaddress
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from . import documents
from .errors import FatalError, InputError
from .paths import shown
from .secrets import remember

CONFIG_FILE = "mvshlf-config.json"


@dataclass(frozen=True, slots=True)
class Connection:
    api_url: str
    api_key: str
    config_file: str

    def __repr__(self) -> str:  # the key never appears in output, logs or tracebacks
        return f"Connection(api_url={self.api_url!r}, config_file={self.config_file!r})"


def _read_json(path: Path, what: str) -> dict:
    try:
        document = documents.parse(path)
    except documents.Unreadable as exc:
        hint = ("pass --config, set MOVESHELF_CONFIG, or run `moveshelf-import emulator --write-config .`"
                if not path.exists() else None)
        raise InputError(f"{what} {shown(path)}: {exc}", hint) from None
    if not isinstance(document, dict):
        raise InputError(f"{what} {shown(path)}: $: expected a JSON object")
    return document


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_api_url(api_url: object, path: Path) -> str:
    """The GraphQL URL, if the key may be sent there: over TLS, or in clear only to this machine (the emulator)."""
    where = f"config file {shown(path)}: $.apiUrl"
    parts = urllib.parse.urlsplit(api_url) if isinstance(api_url, str) else None
    if parts is None or parts.scheme not in ("http", "https"):
        raise InputError(f"{where}: expected the GraphQL URL, e.g. https://api.moveshelf.com/graphql")
    if not parts.hostname:
        raise InputError(f"{where}: {api_url!r} names no host; e.g. https://api.moveshelf.com/graphql")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise InputError(f"{where}: {api_url!r} is plain http to another machine, which would send the API key in "
                         "clear; nothing was sent", "use the https:// address (plain http is allowed only to "
                         "localhost, e.g. the emulator)")
    return api_url


def _api_key(settings: dict, path: Path) -> str:
    key = os.environ.get("MOVESHELF_API_KEY")
    if key:
        return key
    key_name = settings.get("apiKeyFileName", "mvshlf-api-key.json")
    if not isinstance(key_name, str) or not key_name:
        raise InputError(f"config file {shown(path)}: $.apiKeyFileName: expected a file name")
    key_file = path.parent / key_name
    key = _read_json(key_file, "API key file").get("secretKey")
    if not isinstance(key, str) or not key:
        raise InputError(f"API key file {shown(key_file)}: $.secretKey: expected the key as a string",
                         "download a key from your Moveshelf profile page")
    return key


def load_connection(config: Path | None = None) -> Connection:
    """The server and key; refused before any request when the key would travel in clear."""
    path = config or Path(os.environ.get("MOVESHELF_CONFIG") or CONFIG_FILE)
    settings = _read_json(path, "config file")
    api_url = check_api_url(settings.get("apiUrl"), path)
    key = _api_key(settings, path)
    remember(key)
    return Connection(api_url=api_url, api_key=key, config_file=str(path))


def project_name(given: str | None, default: str | None = None) -> str:
    """`--project`, else MOVESHELF_PROJECT, else `default` (a saved plan's project)."""
    name = given or os.environ.get("MOVESHELF_PROJECT") or default
    if not name:
        raise InputError("no project given", "pass --project ORGANIZATION/PROJECT or set MOVESHELF_PROJECT")
    return name


def unreachable(api_url: str, reason: str) -> FatalError:
    return FatalError(f"cannot reach {api_url}: {reason}",
                      "check apiUrl in the config file and the network; for a rehearsal start "
                      "`moveshelf-import emulator --write-config .`")
