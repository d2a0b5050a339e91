"""Moveshelf's GraphQL API over the emulator's store, executed by graphql-core.

Objects are plain dicts: scalar fields precomputed, nested fields as callables that
graphql-core's default resolver calls with the field's arguments, so only what a
query selects is read from the store.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import date
from importlib import resources
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    build_schema,
    execute,
    parse,
    validate,
)

from .signing import Signer
from .store import Row, Store

_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_TEMPLATE = {"template": {"subject-first-name": {}, "subject-last-name": {}, "ehr-id": {},
                          "subject-date-of-birth": {}, "subject-sex": {}, "subject-diagnosis": {}},
             "sessionMetadataTabs": [{"name": "Session", "template": {"session-type": {},
                                                                     "interview-fms5m": {}}}]}


class ApiError(GraphQLError):
    """A failure the service reports in `errors` with HTTP 200."""


# -- ids and values -------------------------------------------------------------------------
def global_id(typename: str, pk: int) -> str:
    return base64.b64encode(f"{typename}:{pk}".encode()).decode()


def parse_global_id(value: Any) -> tuple[str, int] | None:
    """(type, pk) of a relay id, or None for anything that is not one of ours."""
    try:
        typename, pk = base64.b64decode(str(value), validate=True).decode().split(":")
        return typename, int(pk)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        return None


def normal_date(value: str) -> str | None:
    """`YYYY-MM-DD` of a date written as the official client's `strptime("%Y-%m-%d")` accepts it
    (`2021-7-4` included, as in Moveshelf's own session names), or None when it is no date."""
    match = _DATE.match(value.strip())
    if not match:
        return None
    try:
        return date(*map(int, match.groups())).isoformat()
    except ValueError:
        return None


def valid_date(value: str) -> bool:
    return normal_date(value) is not None


def as_datetime(day: str | None) -> str | None:
    """Session dates are answered as ISO datetimes at UTC midnight."""
    return f"{day}T00:00:00+00:00" if day else None


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else {}


def _json_serialize(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _json_parse(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("JSONString must be a string holding JSON")
    return json.loads(value)


def _wire_scalar(scalar: Any, output: Callable, parse: Callable) -> None:
    """Give an SDL scalar its coercions, under graphql-core 3.2 and 3.3 names alike."""
    literal = lambda node, _variables=None: parse(getattr(node, "value", None))  # noqa: E731
    scalar.serialize = scalar.coerce_output_value = output
    scalar.parse_value = scalar.coerce_input_value = parse
    scalar.parse_literal = literal
    if hasattr(scalar, "coerce_input_literal"):
        scalar.coerce_input_literal = None


def _date_parse(value: Any) -> str:
    day = normal_date(str(value).split("T")[0])
    if day is None:
        raise ValueError(f"invalid date {value!r}; expected YYYY-MM-DD or an ISO datetime")
    return day


def upload_status(row: Row) -> str:
    """`Processing` until the bytes arrived and the (imitated) processing after them is over."""
    ready_at = row.get("ready_at")
    if row["upload_status"] == "Complete" and ready_at is not None and ready_at > time.time():
        return "Processing"
    return row["upload_status"]


def slash_terminated(path: str | None) -> str | None:
    return path if not path or path.endswith("/") else f"{path}/"


# -- metadata matching -------------------------------------------------------------------------
def _values_of(field: Any) -> list[str]:
    """Every plain value a metadata field holds, whichever of the three shapes it has."""
    if isinstance(field, dict):
        field = field.get("value")
    if isinstance(field, list):
        return [str(e.get("value")) if isinstance(e, dict) else str(e) for e in field]
    return [] if field is None else [str(field)]


def _between(held: list[str], low: str, high: str) -> bool:
    """Numbers compare as numbers, anything else (ISO dates included) as text."""
    try:
        return any(float(low) <= float(h) <= float(high) for h in held)
    except ValueError:
        return any(low <= h <= high for h in held)


def _matches(metadata: dict, key: str, operator: str, value: str | None, values: list[str] | None) -> bool:
    held = _values_of(metadata.get(key))
    match operator:
        case "EQ":
            return value in held
        case "IN":
            return any(v in held for v in values or [])
        case "ALL":
            return all(v in held for v in values or [])
        case "BETWEEN":
            if len(values or []) != 2:
                raise ApiError("BETWEEN takes exactly two values")
            return _between(held, values[0], values[1])
    raise ApiError(f"Unsupported filter operator: {operator}")


def _base_filter(metadata: dict, spec: dict) -> bool:
    if spec.get("logic"):
        results = [_base_filter(metadata, f) for f in spec.get("filters") or []]
        if spec["logic"] not in ("AND", "OR"):
            raise ApiError(f"Unsupported filter logic: {spec['logic']}")
        return all(results) if spec["logic"] == "AND" else any(results)
    return _matches(metadata, spec.get("key") or "", spec.get("operator") or "", spec.get("value"), None)


def _in_range(day: str | None, start: str | None, end: str | None) -> bool:
    if day is None:
        return start is None and end is None
    return (start is None or day >= start[:10]) and (end is None or day <= end[:10])


# -- validation of imported metadata ------------------------------------------------------------
def _field_errors(tab: str, key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        if "date" in key and value and not valid_date(value):
            return [f"{tab}.{key}: '{value}' is not a valid date (YYYY-MM-DD)"]
        return []
    if isinstance(value, dict) and "value" in value:
        return []
    if isinstance(value, list) and all(isinstance(e, dict) and "value" in e for e in value):
        return []
    return [f"{tab}.{key}: expected a string, a {{value, context}} list or a {{multiselect, value}} object"]


def validation_errors(text: str, tab: str) -> list[str]:
    """The errors Moveshelf's metadata validator reports for one tab of imported metadata."""
    try:
        imported = json.loads(text)
    except json.JSONDecodeError as exc:
        return [f"{tab}: not valid JSON ({exc.msg})"]
    if tab == "interventionMetadata":
        if not isinstance(imported, list):
            return [f"interventionMetadata: expected a list of interventions, got {type(imported).__name__}"]
        errors = []
        for i, intervention in enumerate(imported):
            if not isinstance(intervention, dict):
                errors.append(f"interventionMetadata[{i}]: expected an object")
            elif intervention.get("date") and not valid_date(str(intervention["date"])):
                errors.append(f"interventionMetadata[{i}].date: '{intervention['date']}' is not a valid date")
            elif not isinstance(intervention.get("procedures", []), list):
                errors.append(f"interventionMetadata[{i}].procedures: expected a list")
        return errors
    if tab not in ("subjectMetadata", "sessionMetadata"):
        return [f"Unknown metadata tab: {tab}"]
    if not isinstance(imported, dict):
        return [f"{tab}: expected an object, got {type(imported).__name__}"]
    return [e for key, value in imported.items() for e in _field_errors(tab, key, value)]


class MoveshelfApi:
    """The schema, its resolvers, and a cache of parsed and validated queries."""

    def __init__(self, store: Store, signer: Signer, schema_sdl: str | None = None, *,
                 clip_path_slash: bool = False) -> None:
        self.store = store
        self.signer = signer
        self.clip_path_slash = clip_path_slash
        sdl = schema_sdl or resources.files("importer").joinpath("schemas/moveshelf.graphql").read_text()
        self.schema = self._build(sdl)
        self._documents: OrderedDict[str, tuple[DocumentNode | None, list[GraphQLError]]] = OrderedDict()

    # -- schema wiring -------------------------------------------------------------------------
    def _build(self, sdl: str) -> GraphQLSchema:
        schema = build_schema(sdl)
        _wire_scalar(schema.type_map["JSONString"], _json_serialize, _json_parse)
        _wire_scalar(schema.type_map["DateTime"], lambda value: value, _date_parse)
        schema.type_map["Node"].resolve_type = lambda obj, *_: obj["__typename"]
        for name, resolver in self._query_root().items():
            schema.type_map["Query"].fields[name].resolve = resolver
        for name, resolver in self._mutation_root().items():
            schema.type_map["Mutation"].fields[name].resolve = self._atomic(resolver)
        return schema

    def _atomic(self, resolver: Callable) -> Callable:
        """A mutation runs in one transaction, as on the service: one that fails half-way leaves nothing behind,
        and the store is taken once for it, not once for each row it reads and writes (under a lab's uploads,
        taking it again and again made a batch of 50 creates wait ten times its work)."""

        def resolve(*args: Any, **kwargs: Any) -> Any:
            with self.store.transaction():
                return resolver(*args, **kwargs)

        return resolve

    def document(self, query: str) -> tuple[DocumentNode | None, list[GraphQLError]]:
        """The parsed and validated query, cached: labs send the same few queries thousands of times."""
        cached = self._documents.get(query)
        if cached is None:
            try:
                document = parse(query)
                cached = (document, validate(self.schema, document))
            except GraphQLError as exc:
                cached = (None, [exc])
            self._documents[query] = cached
            if len(self._documents) > 512:
                self._documents.popitem(last=False)
        return cached

    @staticmethod
    def root_fields(document: DocumentNode) -> list[str]:
        return [sel.name.value for op in document.definitions if isinstance(op, OperationDefinitionNode)
                for sel in op.selection_set.selections if hasattr(sel, "name")]

    def execute(self, document: DocumentNode, variables: dict | None, operation: str | None) -> dict:
        result = execute(self.schema, document, variable_values=variables, operation_name=operation)
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [e.formatted for e in result.errors]
        return body

    # -- lookups --------------------------------------------------------------------------------------
    def _row(self, typename: str, value: Any) -> Row:
        parsed = parse_global_id(value)
        getter = {"Project": self.store.project, "Patient": self.store.patient,
                  "Session": self.store.session, "MocapClip": self.store.clip,
                  "AdditionalData": self.store.data}[typename]
        row = getter(parsed[1]) if parsed and parsed[0] == typename else None
        if row is None:
            raise ApiError(f"{typename} matching id '{value}' does not exist")
        return row

    def _project(self, value: str) -> Row:
        """A project by relay id or by `organization/name`, as public scripts send either."""
        row = self.store.project_by_name(value)
        return row if row else self._row("Project", value)

    # -- object views ------------------------------------------------------------------------------
    def project(self, row: Row) -> dict:
        pk = row["pk"]
        return {
            "__typename": "Project", "id": global_id("Project", pk), "name": row["name"],
            "description": row["description"], "canEdit": True, "unlistedAccess": False,
            "template": {"name": "Default template", "data": _TEMPLATE},
            "projectConfiguration": {"id": global_id("ProjectConfiguration", pk), "name": "Default",
                                     "data": {}},
            "patientsList": lambda info: [self.patient_item(r) for r in self.store.patients(pk)],
            "patients": lambda info, metadataFilters=None, sessionFilters=None: [
                self.patient(r) for r in self.store.patients(pk)
                if self._patient_selected(r, metadataFilters, sessionFilters)],
            "sessions": lambda info, startDate=None, endDate=None: [
                self.session(r) for r in self.store.sessions_of_project(pk)
                if _in_range(r["date"], startDate, endDate)],
            "recentSessions": lambda info, **kw: self._recent_sessions(pk, **kw),
            "clips": lambda info, first=None: {
                "edges": [{"node": self.clip(r)} for r in self.store.clips_of_project(pk, first)]},
            "datasets": [], "norms": [], "configuration": {},
        }

    def patient_item(self, row: Row) -> dict:
        return {"id": global_id("Patient", row["pk"]), "name": row["name"], "updated": row["updated"],
                "externalId": self._external_id(row)}

    @staticmethod
    def _external_id(row: Row) -> str | None:
        mrn = _loads(row["metadata"]).get("ehr-id")
        return mrn if isinstance(mrn, str) and mrn else None

    def patient(self, row: Row) -> dict:
        pk = row["pk"]
        return {
            "__typename": "Patient", "id": global_id("Patient", pk), "name": row["name"],
            "metadata": _loads(row["metadata"]), "updated": row["updated"],
            "externalId": self._external_id(row),
            "project": lambda info: self.project(self.store.project(row["project_pk"])),
            "reports": lambda info: self._reports("patient_pk", pk),
            "sessions": lambda info: [self.session(r) for r in self.store.sessions_of_patient(pk)],
        }

    def session(self, row: Row) -> dict:
        pk = row["pk"]
        return {
            "__typename": "Session", "id": global_id("Session", pk), "projectPath": row["project_path"],
            "date": as_datetime(row["date"]), "metadata": _loads(row["metadata"]), "updated": row["updated"],
            "project": lambda info: self.project(self.store.project(row["project_pk"])),
            "patient": lambda info: self.patient(self.store.patient(row["patient_pk"])),
            "reports": lambda info: self._reports("session_pk", pk),
            "clips": lambda info: [self.clip(r) for r in self.store.clips_of_session(pk)],
            "norms": [],
        }

    def _reports(self, column: str, pk: int) -> list[dict]:
        return [{"id": global_id("Report", r["pk"]), "title": r["title"]}
                for r in self.store.reports_of(column, pk)]

    def clip_path(self, path: str | None) -> str | None:
        """A clip's projectPath as this variant stores and answers it (see `--clip-path-slash`)."""
        return slash_terminated(path) if self.clip_path_slash else path

    def clip(self, row: Row) -> dict:
        pk = row["pk"]
        data_rows = lambda: self.store.data_of_clip(pk)  # noqa: E731
        return {
            "__typename": "MocapClip", "id": global_id("MocapClip", pk), "title": row["title"],
            "description": row["description"], "created": row["created"],
            "projectPath": self.clip_path(row["project_path"]),
            "uploadStatus": upload_status(row), "hasCharts": False,
            "hasVideo": lambda info: any(d["data_type"] == "video" for d in data_rows()),
            "customOptions": _loads(row["custom_options"]) if row["custom_options"] else None,
            "originalFileName": row["filename"],
            "originalDataDownloadUri": self.signer.download_url("clip", pk, row["filename"])
            if row["filename"] else None,
            "additionalData": lambda info, dataTypeFilter=None: [
                self.data(d) for d in data_rows() if dataTypeFilter is None or d["data_type"] in dataTypeFilter],
        }

    def data(self, row: Row) -> dict:
        return {
            "id": global_id("AdditionalData", row["pk"]), "dataType": row["data_type"],
            "uploadStatus": upload_status(row), "originalFileName": row["filename"],
            "previewDataUri": None,
            "originalDataDownloadUri": self.signer.download_url("data", row["pk"], row["filename"]),
        }

    # -- filters ----------------------------------------------------------------------------------------
    def _patient_selected(self, row: Row, metadata_filters: dict | None, session_filters: dict | None) -> bool:
        if metadata_filters and not _base_filter(_loads(row["metadata"]), metadata_filters):
            return False
        if not session_filters:
            return True
        dates = session_filters.get("sessionDates") or {}
        counted = [s for s in self.store.sessions_of_patient(row["pk"])
                   if not dates or _in_range(s["date"], dates.get("startDate"), dates.get("endDate"))]
        bounds = session_filters.get("numSessions") or {}
        low = bounds.get("min") if bounds.get("min") is not None else (1 if dates else 0)
        high = bounds.get("max")
        return len(counted) >= low and (high is None or len(counted) <= high)

    def _recent_sessions(self, project_pk: int, startDate=None, endDate=None, limit=None,
                         metadataFilters=None, patientMetadataFilters=None) -> list[dict]:
        def selected(row: Row) -> bool:
            if (startDate or endDate) and not _in_range(row["date"], startDate, endDate):
                return False
            session_meta = _loads(row["metadata"]).get("metadata") or {}
            if not all(_matches(session_meta, f["key"], f["operator"], f.get("value"), f.get("values"))
                       for f in metadataFilters or []):
                return False
            patient_meta = _loads(self.store.patient(row["patient_pk"])["metadata"])
            return all(_matches(patient_meta, f["key"], f["operator"], f.get("value"), f.get("values"))
                       for f in patientMetadataFilters or [])

        rows = sorted((r for r in self.store.sessions_of_project(project_pk) if selected(r)),
                      key=lambda r: (r["date"] or "", r["pk"]), reverse=True)
        return [self.session(r) for r in rows[: limit if limit is not None else None]]

    # -- roots --------------------------------------------------------------------------------------------
    def _query_root(self) -> dict[str, Callable]:
        def node(_root, info, id):  # noqa: A002
            parsed = parse_global_id(id)
            if parsed is None:
                return None
            typename, pk = parsed
            if typename == "Job":
                job = self.store.job(pk)
                return job and {"__typename": "Job", "id": id, "status": job["status"],
                                "result": {}, "description": job["description"]}
            views = {"Project": (self.store.project, self.project), "Patient": (self.store.patient, self.patient),
                     "Session": (self.store.session, self.session), "MocapClip": (self.store.clip, self.clip)}
            if typename not in views:
                return None
            getter, view = views[typename]
            row = getter(pk)
            return view(row) if row else None

        def patient(_root, info, ehrId, projectId):
            project = self._project(projectId)
            for row in self.store.patients(project["pk"]):
                if self._external_id(row) == ehrId:
                    return self.patient(row)
            return None

        return {
            "viewer": lambda _root, info: {"projects": [self.project(r) for r in self.store.projects()]},
            "node": node,
            "patient": patient,
            "metadataValidator": lambda _root, info, importedMetadata, whichTabToValidate, **_: {
                "validationErrors": validation_errors(importedMetadata, whichTabToValidate)},
        }

    def _mutation_root(self) -> dict[str, Callable]:
        store = self.store
        return {
            "createPatient": lambda _r, info, projectId, name: {
                "patient": self.patient(store.create_patient(self._project(projectId)["pk"], name))},
            "updatePatient": self._update_patient,
            "deletePatient": lambda _r, info, patientId: {
                "deleted": store.delete_patient(self._row("Patient", patientId)["pk"])},
            "createSession": self._create_session,
            "updateSession": self._update_session,
            "deleteSession": lambda _r, info, sessionId: {
                "deleted": store.delete_session(self._row("Session", sessionId)["pk"])},
            "createClips": self._create_clips,
            "updateClip": self._update_clip,
            "deleteClip": lambda _r, info, clipId: {"ok": store.delete_clip(self._row("MocapClip", clipId)["pk"])},
            "createAdditionalData": self._create_data,
            "deleteAdditionalData": lambda _r, info, id: {  # noqa: A006
                "ok": store.delete_data(self._row("AdditionalData", id)["pk"])},
            "createInteractiveReport": lambda _r, info, sessionId, title, **_: self._report(sessionId, title),
            "createAutomaticInteractiveReports": lambda _r, info, sessionId, **_: self._report(
                sessionId, "Automatic report"),
            "processGaitTool": lambda _r, info, **kw: {
                "jobId": global_id("Job", store.create_job(f"Gait tool {kw.get('trialType')}")["pk"])},
        }

    def _update_patient(self, _root, info, patientId, metadata=None):
        """Without `metadata` nothing is changed: an absent argument is not an order to wipe the subject."""
        row = self._row("Patient", patientId)
        if metadata is None:
            return {"updated": True}
        if not isinstance(metadata, dict):
            raise ApiError("metadata must be a JSON object")
        return {"updated": self.store.update_patient(row["pk"], metadata)}

    def _create_session(self, _root, info, projectId, projectPath, patientId, sessionDate=None):
        project = self._project(projectId)
        patient = self._row("Patient", patientId)
        day = _session_date(sessionDate)
        if not (projectPath.startswith("/") and projectPath.endswith("/") and projectPath.count("/") >= 3):
            raise ApiError(f"Invalid projectPath '{projectPath}'; expected /<subject>/<session>/")
        return {"session": self.session(self.store.create_session(project["pk"], patient["pk"], projectPath, day))}

    def _update_session(self, _root, info, sessionId, sessionName, sessionMetadata=None,
                        sessionDate=None, previousUpdatedAt=None):
        row = self._row("Session", sessionId)
        if previousUpdatedAt and previousUpdatedAt != row["updated"]:
            raise ApiError("The session was changed by someone else since it was read")
        day = _session_date(sessionDate)
        if sessionMetadata is not None and not isinstance(sessionMetadata, dict):
            raise ApiError("sessionMetadata must be a JSON object")
        if not sessionName or "/" in sessionName:
            raise ApiError(f"Invalid session name '{sessionName}'")
        prefix = row["project_path"].rstrip("/").rsplit("/", 1)[0]
        updated = self.store.update_session(row["pk"], f"{prefix}/{sessionName}/", sessionMetadata, day)
        return {"updated": updated}

    def _create_clips(self, _root, info, input):  # noqa: A002
        project = self._project(input["project"])
        clips = input["clips"]
        for clip in clips:
            if clip.get("crc32c") and not _valid_crc(clip["crc32c"]):
                raise ApiError(f"Invalid crc32c '{clip['crc32c']}' for clip '{clip['clientId']}'")
        metadata = [dict(clip.get("metadata") or {}) for clip in clips]
        for meta in metadata:
            meta["projectPath"] = self.clip_path(meta.get("projectPath"))
        with self.store.transaction():  # the batch lands whole or not at all; the answer is built after
            rows = [self.store.create_clip(project["pk"], meta, clip.get("filename"), clip.get("crc32c"))
                    for clip, meta in zip(clips, metadata, strict=True)]
        return {"response": [{"clientId": clip["clientId"], "mocapClip": self.clip(row),
                              "uploadUrl": self.signer.url("put", "clip", row["pk"]) if row["filename"] else None}
                             for clip, row in zip(clips, rows, strict=True)]}

    def _update_clip(self, _root, info, clipData):
        row = self._row("MocapClip", clipData["id"])
        fields: dict[str, Any] = {}
        metadata = clipData.get("metadata") or {}
        for key, column in (("title", "title"), ("description", "description"), ("projectPath", "project_path")):
            if metadata.get(key) is not None:
                fields[column] = self.clip_path(metadata[key]) if key == "projectPath" else metadata[key]
        if clipData.get("customOptions") is not None:
            try:
                fields["custom_options"] = json.dumps(json.loads(clipData["customOptions"]))
            except json.JSONDecodeError as exc:
                raise ApiError(f"customOptions is not valid JSON: {exc.msg}") from exc
        self.store.update_clip(row["pk"], fields)
        return {"clip": self.clip(self.store.clip(row["pk"]))}

    def _create_data(self, _root, info, input=None):  # noqa: A002
        if not input:
            raise ApiError("input is required")
        clip = self._row("MocapClip", input["clipId"])
        if not _valid_crc(input["crc32c"]):
            raise ApiError(f"Invalid crc32c '{input['crc32c']}': expected base64 of 4 bytes")
        row = self.store.create_data(clip["pk"], input["dataType"], input["filename"], input["crc32c"])
        return {"uploadUrl": self.signer.url("put", "data", row["pk"]), "data": self.data(row)}

    def _report(self, session_id: str, title: str) -> dict:
        session = self._row("Session", session_id)
        self.store.create_report(session["pk"], session["patient_pk"], title)
        return {"ok": True}


def _session_date(value: str | None) -> str | None:
    """The zero-padded date of a session, None when none is given; an error when it is no date."""
    if not value:
        return None
    day = normal_date(value)
    if day is None:
        raise ApiError(f"Invalid session date '{value}'; expected YYYY-MM-DD")
    return day


def _valid_crc(value: str) -> bool:
    try:
        return len(base64.b64decode(value, validate=True)) == 4
    except (binascii.Error, ValueError):
        return False
