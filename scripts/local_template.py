"""Writes the template the local stack deploys: template.yaml with each Rust function's code taken
from the binaries one `cargo build --profile local` made, in place of `sam build`'s per-function
release builds (which compile the workspace once per function target and take many minutes).

    python scripts/local_template.py TARGET_PROFILE_DIR OUT_DIR API_ID

For every function built with `rust-cargolambda`, copies TARGET_PROFILE_DIR/<Binary> to
OUT_DIR/<Binary>/bootstrap (only when it changed, so an unchanged function keeps its code hash and
SAM uploads nothing), and writes OUT_DIR/template.json pointing each function's CodeUri there.
The REST API is tagged with LocalStack's `_custom_id_` = API_ID, so that its URL is known before the
deploy and stays the same across LocalStack restarts (the error emails link to it). Everything else
is template.yaml's own. Prints the names of the functions whose code changed.
"""

import filecmp
import json
import shutil
import sys
from pathlib import Path

from cfnlint.decode.cfn_yaml import load  # cfn-lint reads CloudFormation's short-form tags

ROOT = Path(__file__).resolve().parents[1]


def rust_functions(template: dict) -> dict[str, str]:
    """Logical id -> cargo binary of every function `sam build` would compile with cargo-lambda."""
    return {
        logical_id: resource["Metadata"]["BuildProperties"]["Binary"]
        for logical_id, resource in template["Resources"].items()
        if resource.get("Type") == "AWS::Serverless::Function"
        and resource.get("Metadata", {}).get("BuildMethod") == "rust-cargolambda"
    }


def main(binaries: Path, out: Path, api_id: str) -> None:
    template = load(str(ROOT / "template.yaml"))
    functions = rust_functions(template)
    if not functions:
        sys.exit("template.yaml defines no rust-cargolambda function")
    for logical_id, binary in functions.items():
        built = binaries / binary
        if not built.is_file():
            sys.exit(f"{built} is missing: build it with cargo build --profile local")
        code = out / binary
        code.mkdir(parents=True, exist_ok=True)
        bootstrap = code / "bootstrap"
        if not bootstrap.exists() or not filecmp.cmp(built, bootstrap, shallow=False):
            shutil.copy2(built, bootstrap)
            print(binary)
        resource = template["Resources"][logical_id]
        resource["Properties"]["CodeUri"] = str(code)
        # Nothing is left to build: the deploy packages the folder as it is.
        del resource["Metadata"]
    # A nested stack's template is named relative to template.yaml; template.json sits elsewhere.
    for resource in template["Resources"].values():
        if resource.get("Type") == "AWS::CloudFormation::Stack":
            resource["Properties"]["TemplateURL"] = str(ROOT / resource["Properties"]["TemplateURL"])
    apis = [resource for resource in template["Resources"].values() if resource.get("Type") == "AWS::Serverless::Api"]
    if len(apis) != 1:
        sys.exit(f"template.yaml defines {len(apis)} REST APIs, where one is expected")
    # SAM puts an API's tags on its stage only, unless told to pass them on to the RestApi it makes.
    apis[0]["Properties"].update(Tags={"_custom_id_": api_id}, PropagateTags=True)
    (out / "template.json").write_text(json.dumps(template, indent=1))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
