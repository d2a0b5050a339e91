"""The GraphQL documents the importer sends: the same operations the official client uses."""

from __future__ import annotations

PROJECTS = "query { viewer { projects { id name } } }"

SUBJECT_LIST = """query subjects($projectId: ID!) {
  node(id: $projectId) { ... on Project { id patientsList { id name externalId } } } }"""

SUBJECT_TREE_FRAGMENT = """fragment subjectTree on Patient {
  id name metadata
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

CREATE_SUBJECT = """mutation createPatient($projectId: String!, $name: String!) {
  createPatient(projectId: $projectId, name: $name) { patient { id name } } }"""

UPDATE_SUBJECT = """mutation updatePatient($patientId: ID!, $metadata: JSONString) {
  updatePatient(patientId: $patientId, metadata: $metadata) { updated } }"""

CREATE_SESSION = """mutation createSession($projectId: String!, $projectPath: String!, $patientId: ID!,
    $sessionDate: String) {
  createSession(projectId: $projectId, projectPath: $projectPath, patientId: $patientId, sessionDate: $sessionDate) {
    session { id projectPath } } }"""

UPDATE_SESSION = """mutation updateSession($sessionId: ID!, $sessionName: String!, $sessionMetadata: JSONString,
    $sessionDate: String) {
  updateSession(sessionId: $sessionId, sessionName: $sessionName, sessionMetadata: $sessionMetadata,
    sessionDate: $sessionDate) { updated } }"""

CREATE_TRIALS = """mutation createClips($input: ClipCreationInput!) {
  createClips(input: $input) { response { clientId mocapClip { id } } } }"""

def aliased(operation: str, argument: str, input_type: str, selection: str, count: int) -> str:
    """One mutation request carrying `count` operations, aliased a0, a1, ..., with inputs $a0, $a1, ..."""
    variables = ", ".join(f"$a{i}: {input_type}" for i in range(count))
    fields = " ".join(f"a{i}: {operation}({argument}: $a{i}) {{ {selection} }}" for i in range(count))
    return f"mutation batch({variables}) {{ {fields} }}"


def create_files(count: int) -> str:
    return aliased("createAdditionalData", "input", "CreateAdditionalDataInput", "uploadUrl data { id }", count)


def update_trials(count: int) -> str:
    return aliased("updateClip", "clipData", "UpdateClipInput!", "clip { id }", count)


DELETE_DATA = """mutation deleteAdditionalData($id: ID!) { deleteAdditionalData(id: $id) { ok } }"""

NORMS = """query norms($id: ID!) { node(id: $id) { ... on Project { norms { id name } } } }"""

REPORTS_OF_SESSION = """query reports($id: ID!) { node(id: $id) { ... on Session { reports { id } } } }"""

CREATE_REPORTS = """mutation CreateAutomaticInteractiveReports($sessionId: ID!, $normId: String) {
  createAutomaticInteractiveReports(sessionId: $sessionId, normId: $normId) { ok } }"""
