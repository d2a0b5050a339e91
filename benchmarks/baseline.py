"""Today's workflow: Moveshelf's import guide followed with the unmodified official client.

Find or create the subject by MRN, import its metadata, find or create the session, import
its metadata, `util.addOrGetTrial` per trial, skip files whose current version is uploaded
(`isCurrentVersionUploaded`), `uploadAdditionalData`, then `updateClipMetadata` with the
trial template — strictly sequential, as the guide's scripts are.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from moveshelf_api import util
from moveshelf_api.api import MoveshelfApi


def import_session(api: MoveshelfApi, project: str, project_id: str, folder: Path) -> None:
    config = json.loads((folder / "moveshelf_config_import.json").read_text())
    subject_metadata = dict(config.get("subjectMetadata", {}))
    mrn = subject_metadata.get("ehr-id")
    subject = api.getProjectSubjectByEhrId(mrn, project_id) if mrn else None
    subject_id = subject["id"] if subject else api.createSubject(project, folder.parent.name)["id"]
    subject_details = api.getSubjectDetails(subject_id)
    subject_metadata["interventions"] = config.get("interventionMetadata", [])
    api.updateSubjectMetadataInfo(subject_id, json.dumps(subject_metadata))

    session = next((api.getSessionById(s["id"]) for s in subject_details.get("sessions", [])
                    if s["projectPath"].split("/")[2] == folder.name), None)
    if session is None:
        created = api.createSession(project, f"/{subject_details['name']}/{folder.name}/", subject_id)
        session = api.getSessionById(created["id"])
    api.updateSessionMetadataInfo(session["id"], folder.name, json.dumps({"metadata": config["sessionMetadata"]}))

    conditions = util.getConditionsFromSession(session, [])
    for condition_name, trials in config["conditionDefinition"].items():
        condition = next((c for c in conditions if c["path"] == condition_name),
                         {"path": condition_name, "clips": []})
        for trial in trials:
            clip_id = util.addOrGetTrial(api, session, condition, trial)
            data_ids = []
            for path in sorted(folder.glob(f"{trial}.*")):
                if api.isCurrentVersionUploaded(str(path), clip_id):
                    data_ids += [d["id"] for d in api.getAdditionalData(clip_id) if d["originalFileName"] == path.name]
                    continue
                data_ids.append(api.uploadAdditionalData(str(path), clip_id, "raw", path.name))
            template = {}
            if config.get("trialSideSelection", {}).get(trial):
                template["sideAdditionalData"] = dict.fromkeys(data_ids, config["trialSideSelection"][trial])
            flags = config.get("representativeTrials", {}).get(trial, "")
            if flags:
                template["representativeTrial"] = {side: True for side in ("left", "right") if side in flags}
            api.updateClipMetadata(clip_id, {"title": trial},
                                   json.dumps({"trialTemplate": template} if template else {}))


def main(config_dir: str, project: str, root: str) -> None:
    config = json.loads((Path(config_dir) / "mvshlf-config.json").read_text())
    api = MoveshelfApi(api_key_file=str(Path(config_dir) / config["apiKeyFileName"]), api_url=config["apiUrl"])
    project_id = next(p["id"] for p in api.getUserProjects() if p["name"] == project)
    for folder in sorted(Path(root).glob("*/*/moveshelf_config_import.json")):
        import_session(api, project, project_id, folder.parent)


if __name__ == "__main__":
    main(*sys.argv[1:4])
