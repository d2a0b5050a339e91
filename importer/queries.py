"""The GraphQL documents the importer sends: the same operations the official client uses."""

from __future__ import annotations

PROJECTS = "query { viewer { projects { id name } } }"

SUBJECT_LIST = """query subjects($projectId: ID!) {
  node(id: $projectId) { ... on Project { id patientsList { id name externalId updated } } } }"""

SUBJECT_TREE_FRAGMENT = """fragment subjectTree on Patient {
  id name metadata updated
  sessions { id projectPath date metadata
    clips { id title projectPath customOptions
      additionalData { id dataType uploadStatus originalFileName originalDataDownloadUri } } } }"""


def subject_trees(count: int) -> str:
    """One request reading `count` subjects' whole trees, aliased s0, s1, ..."""
    variables = ", ".join(f"$s{i}: ID!" for i in range(count))
    fields = " ".join(f"s{i}: node(id: $s{i}) {{ ...subjectTree }}" for i in range(count))
    return f"query subjectTrees({variables}) {{ {fields} }}\n{SUBJECT_TREE_FRAGMENT}"


SESSIONS_OF_SUBJECT = """query sessions($id: ID!) {
  node(id: $id) { ... on Patient { sessions { id projectPath } } } }"""

CLIPS_OF_SESSION = """query clips($id: ID!) {
  node(id: $id) { ... on Session { clips { id title projectPath } } } }"""

FILES_OF_SESSION = """query files($id: ID!) {
  node(id: $id) { ... on Session { clips { id additionalData { id originalFileName uploadStatus } } } } }"""

CREATE_TRIALS = """mutation createClips($input: ClipCreationInput!) {
  createClips(input: $input) { response { clientId mocapClip { id } } } }"""

def batch(operation: str, arguments: dict[str, str], selection: str, count: int) -> str:
    """One mutation request carrying `count` operations aliased a0, a1, ...; operation i takes its arguments from
    the variables `$a<i>_<argument>` (`batch_variables` names them). GraphQL runs a request's mutations in order."""
    variables = ", ".join(f"$a{i}_{name}: {kind}" for i in range(count) for name, kind in arguments.items())
    fields = " ".join(f"a{i}: {operation}({', '.join(f'{name}: $a{i}_{name}' for name in arguments)}) "
                      f"{{ {selection} }}" for i in range(count))
    return f"mutation batch({variables}) {{ {fields} }}"


def batch_variables(inputs: list[dict[str, object]]) -> dict[str, object]:
    """The variables of a `batch` request: operation i's arguments as `a<i>_<argument>`."""
    return {f"a{i}_{name}": value for i, arguments in enumerate(inputs) for name, value in arguments.items()}


def create_subjects(count: int) -> str:
    return batch("createPatient", {"projectId": "String!", "name": "String!"}, "patient { id name }", count)


def update_subjects(count: int) -> str:
    return batch("updatePatient", {"patientId": "ID!", "metadata": "JSONString"}, "updated", count)


def create_sessions(count: int) -> str:
    return batch("createSession", {"projectId": "String!", "projectPath": "String!", "patientId": "ID!",
                                   "sessionDate": "String"}, "session { id projectPath }", count)


def update_sessions(count: int) -> str:
    return batch("updateSession", {"sessionId": "ID!", "sessionName": "String!", "sessionMetadata": "JSONString",
                                   "sessionDate": "String"}, "updated", count)


def create_files(count: int) -> str:
    return batch("createAdditionalData", {"input": "CreateAdditionalDataInput"}, "uploadUrl data { id }", count)


def update_trials(count: int) -> str:
    return batch("updateClip", {"clipData": "UpdateClipInput!"}, "clip { id }", count)


DELETE_DATA = """mutation deleteAdditionalData($id: ID!) { deleteAdditionalData(id: $id) { ok } }"""

NORMS = """query norms($id: ID!) { node(id: $id) { ... on Project { norms { id name } } } }"""

REPORTS_OF_SESSION = """query reports($id: ID!) { node(id: $id) { ... on Session { reports { id } } } }"""

CREATE_REPORTS = """mutation CreateAutomaticInteractiveReports($sessionId: ID!, $normId: String) {
  createAutomaticInteractiveReports(sessionId: $sessionId, normId: $normId) { ok } }"""
