"""Connection settings: which server, which key, which project.

Sources, first found wins: `--config` / MOVESHELF_CONFIG / ./mvshlf-config.json for the
server and the key file (relative to the config's folder); MOVESHELF_API_KEY overrides
the key file; `--project` / MOVESHELF_PROJECT names the project.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import FatalError, InputError

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
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist",
                         "pass --config, set MOVESHELF_CONFIG, or run `moveshelf-import emulator --write-config .`"
                         ) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} {path}: line {exc.lineno} column {exc.colno}: not valid JSON: {exc.msg}") from None
    except OSError as exc:
        raise InputError(f"{what} {path} cannot be read: {exc.strerror}") from None
    if not isinstance(document, dict):
        raise InputError(f"{what} {path}: $: expected a JSON object")
    return document


def load_connection(config: Path | None = None) -> Connection:
    path = config or Path(os.environ.get("MOVESHELF_CONFIG") or CONFIG_FILE)
    settings = _read_json(path, "config file")
    api_url = settings.get("apiUrl")
    if not isinstance(api_url, str) or not api_url.startswith(("http://", "https://")):
        raise InputError(f"config file {path}: $.apiUrl: expected the GraphQL URL, "
                         "e.g. https://api.moveshelf.com/graphql")
    key = os.environ.get("MOVESHELF_API_KEY")
    if not key:
        key_name = settings.get("apiKeyFileName", "mvshlf-api-key.json")
        if not isinstance(key_name, str):
            raise InputError(f"config file {path}: $.apiKeyFileName: expected a file name")
        key_file = path.parent / key_name
        key = _read_json(key_file, "API key file").get("secretKey")
        if not isinstance(key, str) or not key:
            raise InputError(f"API key file {key_file}: $.secretKey: expected the key as a string",
                             "download a key from your Moveshelf profile page")
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
