"""deploy/: what can be checked without a container runtime or a cluster.

The Helm chart is rendered by the small subset renderer (``_helm_subset``; no helm binary here)
and every manifest is validated against the Kubernetes OpenAPI schemas (kubernetes-validate,
which ships them: offline, strict). The systemd unit goes through ``systemd-analyze verify``
and ``security --offline``. The Containerfile and compose file are read for the properties
the issue asks for; their install steps run in CI (.ci/run runs deploy/container/install.sh
in a clean venv).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from _helm_subset import TemplateError, _parse, render_chart

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CHART = DEPLOY / "helm" / "veritee"
K8S_VERSION = "1.30"

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "replicas-file-key": {"replicaCount": 3, "runtimeClassName": "kata-qemu-snp",
                          "masterKey": {"source": "file", "existingSecret": "veritee-master",
                                        "path": "/etc/veritee/master/master.key"}},
    "dev-plain-http": {"devMode": True, "tls": {"enabled": False},
                       "masterKey": {"source": "emulated"}, "trustRoots": "/x/ark.pem",
                       "networkPolicy": {"enabled": False}},
}


def _docs(values: dict[str, Any]) -> list[dict[str, Any]]:
    rendered = render_chart(CHART, values=values)
    docs = [d for text in rendered.values() for d in yaml.safe_load_all(text) if d]
    assert docs
    return docs


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_chart_manifests_validate_against_kubernetes_schemas(name: str) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    for doc in _docs(VALUE_SETS[name]):
        kv.validate(doc, K8S_VERSION, strict=True)  # raises ValidationError


def _deployment(values: dict[str, Any]) -> dict[str, Any]:
    return next(d for d in _docs(values) if d["kind"] == "Deployment")


def test_chart_runs_non_root_read_only_with_probes_and_limits() -> None:
    dep = _deployment({})
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert container["resources"]["limits"]["memory"] == "512Mi"


def test_chart_takes_the_database_url_from_a_secret_never_a_literal() -> None:
    env = {e["name"]: e for e in _deployment({})["spec"]["template"]["spec"]["containers"][0]
           ["env"]}
    ref = env["VERITEE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "veritee-database", "key": "url"}
    assert "postgresql://" not in "".join(render_chart(CHART).values())


def test_chart_replicas_and_master_key_source_follow_values() -> None:
    dep = _deployment(VALUE_SETS["replicas-file-key"])
    assert dep["spec"]["replicas"] == 3
    pod = dep["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "kata-qemu-snp"
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["VERITEE_KEY_SOURCE"] == "file"
    assert env["VERITEE_MASTER_KEY_FILE"] == "/etc/veritee/master/master.key"
    assert "VERITEE_DEV_MODE" not in env
    assert any(v["name"] == "master-key" and v["secret"]["secretName"] == "veritee-master"
               for v in pod["volumes"])


def test_chart_network_policy_limits_ingress_and_egress() -> None:
    (policy,) = [d for d in _docs({}) if d["kind"] == "NetworkPolicy"]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert [p["port"] for p in policy["spec"]["ingress"][0]["ports"]] == [8080]
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {5432, 53}
    assert not [d for d in _docs(VALUE_SETS["dev-plain-http"]) if d["kind"] == "NetworkPolicy"]


def test_subset_renderer_refuses_what_it_does_not_implement() -> None:
    for template in ("{{ include \"x\" . }}", "{{ range .Values.x }}{{ end }}",
                     "{{ if .Values.a }}", "{{ end }}", "{{ .Values.a | b64enc }}"):
        with pytest.raises(TemplateError):
            from _helm_subset import _render

            _render(_parse(template), {"Values": {"a": "x"}})


def test_subset_renderer_trims_like_helm() -> None:
    from _helm_subset import _render

    out = _render(_parse("a:\n  {{- if .Values.on }}\n  b: {{ .Values.v | quote }}\n  "
                         "{{- end }}\nc: 1\n"), {"Values": {"on": True, "v": 3}})
    assert out == 'a:\n  b: "3"\nc: 1\n'


# -- systemd -----------------------------------------------------------------------------------
def _unit_for_verify(tmp_path: Path) -> Path:
    # verify checks that ExecStart's binary exists: point it at this environment's veritee
    # (the only change to the shipped unit).
    veritee = Path(sys.executable).parent / "veritee"
    if not veritee.exists():
        pytest.skip("no veritee console script beside the interpreter")
    text = (DEPLOY / "systemd" / "veritee.service").read_text()
    unit = tmp_path / "veritee.service"
    unit.write_text(text.replace("/opt/veritee/bin/veritee", str(veritee)))
    return unit


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    unit = _unit_for_verify(tmp_path)
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                       text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "", r.stderr  # no unknown keys, no warnings


def test_systemd_unit_is_sandboxed(tmp_path: Path) -> None:
    text = (DEPLOY / "systemd" / "veritee.service").read_text()
    for line in ("ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes",
                 "CapabilityBoundingSet=\n", "RestrictAddressFamilies=", "SystemCallFilter="):
        assert line in text
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes",
                        str(_unit_for_verify(tmp_path))], capture_output=True, text=True,
                       timeout=120, check=False)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    assert m is not None, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0  # systemd's scale: 0 (locked down) .. 10 (exposed)


# -- container image and compose ---------------------------------------------------------------
def test_containerfile_is_non_root_with_a_health_check() -> None:
    text = (DEPLOY / "container" / "Containerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert re.search(r"^HEALTHCHECK .*healthcheck\.py", text, re.M | re.S)
    assert 'ENTRYPOINT ["veritee", "serve"]' in text
    # The image installs with the very script CI runs in a clean venv.
    assert "deploy/container/install.sh" in text and "veritee-install /opt/veritee" in text


def test_compose_runs_read_only_non_root_on_postgresql() -> None:
    doc = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    svc, pg = doc["services"]["veritee"], doc["services"]["postgres"]
    assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
    assert svc["user"].split(":")[0] not in ("0", "root")
    assert "no-new-privileges:true" in svc["security_opt"]
    assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in pg and doc["networks"]["backend"]["internal"] is True
    assert "${VERITEE_PG_PASSWORD:?" in svc["environment"]["VERITEE_DATABASE_URL"]
    assert all(p.startswith("127.0.0.1:") for p in svc["ports"])


def test_schema_validation_catches_a_misspelt_security_field() -> None:
    kv = pytest.importorskip("kubernetes_validate")
    dep = _deployment({})
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "readOnlyRootFilesytem"] = True  # a typo would silently leave the root fs writable
    with pytest.raises(kv.ValidationError):
        kv.validate(dep, K8S_VERSION, strict=True)
