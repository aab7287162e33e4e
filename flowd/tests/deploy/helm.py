"""The chart tests' bridge to the real Helm engine (helm-python-sdk: Helm's Go SDK as a library)
and to the Kubernetes OpenAPI schemas (kubernetes-validate). One JSON request on stdin, one JSON
answer on stdout; the Rust tests decide what passes."""

import json
import sys

import helm_python as helm
import kubernetes_validate
import yaml


def lint(request):
    report = helm.lint(request["chart"], request.get("values"), strict=True)
    return {"messages": report.get("messages") or [], "errors": report.get("errors") or []}


def render(request):
    chart = helm.Chart.load(request["chart"])
    try:
        manifests = chart.render(
            request.get("values"),
            name=request["name"],
            namespace=request["namespace"],
            is_install=True,
        )
    except Exception as err:  # the engine's refusal is the answer, not a crash
        return {"error": f"{type(err).__name__}: {err}"}
    return {"manifests": manifests}


def validate(request):
    problems = []
    for text in request["documents"]:
        for document in yaml.safe_load_all(text):
            if not document:
                continue
            name = f'{document.get("kind")}/{document.get("metadata", {}).get("name")}'
            try:
                kubernetes_validate.validate(document, request["kubernetes"], strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                problems.append({"object": name, "missing_schema": True})
            except kubernetes_validate.ValidationError as err:
                problems.append({"object": name, "error": str(err.message), "path": list(err.path)})
    return {"problems": problems}


COMMANDS = {"lint": lint, "render": render, "validate": validate}

if __name__ == "__main__":
    request = json.load(sys.stdin)
    json.dump(COMMANDS[request["command"]](request), sys.stdout)
