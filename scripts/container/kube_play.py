#!/usr/bin/env python3
"""The pods of a Kustomize overlay, started with `podman kube play` and probed as a kubelet would.

    python3 scripts/container/kube_play.py up [--overlay k8s-manifests/overlays/local]
    python3 scripts/container/kube_play.py down

`up` renders the overlay with `kubectl kustomize` and plays, unchanged but for what a node and a
control plane would add:
  - each Deployment's pod template as one Pod named after the Deployment (podman plays a single
    replica); the ConfigMaps, PersistentVolumeClaims and every field of the pod spec as rendered
    (environment, volumes, security context, resources, probes);
  - the Secrets the overlay expects to exist (the admin token, a fresh ES256 signing key), as
    `k8s-manifests/overlays/local/ensure-jwt-secret.sh` creates them on a cluster;
  - cluster DNS: each Service name resolves, through the pod's hostAliases, to the address of the
    pod its selector picks (podman has no Services); the addresses are fixed with `--ip`.
Then it runs every container's readiness probe until it passes, as the kubelet does: an httpGet
from the host to the pod's address and named port, an exec probe's command in the container;
checks that each container runs with the security context the manifest asks for; asks the load
balancer's /stats whether it sees every service ONLINE through those Service names; and runs the
backup CronJob's pod once against the user-service volume, as its schedule would.
Kinds a cluster acts on and podman does not (Service, HPA, PodDisruptionBudget, NetworkPolicy,
the CronJob's schedule, Namespace) are listed and not played: docs/deploy.md says what this
leaves unproven.
"""
import argparse
import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
NETWORK = "titanium-kube"
SUBNET_PREFIX = "10.89.70."
LABEL = "titanium.test/kube-play"
PLAYED = ROOT / "var" / "kube-play.yaml"


def run(*args, check=True, capture=True, input=None):
    result = subprocess.run(args, check=False, text=True, input=input,
                            stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None)
    if check and result.returncode != 0:
        raise SystemExit(f"kube-play: {' '.join(args)} failed ({result.returncode}): {(result.stderr or '').strip()[-2000:]}")
    return result


def say(message):
    print(f"  {message}", flush=True)


def matches(selector, labels):
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


# The Secrets a cluster gets from ensure-jwt-secret.sh (never committed): name, the key of its
# data, and how a fresh value is made. `up` creates them as podman secrets; `down` removes these.
SECRETS = (
    ("titanium-admin-token", "ADMIN_TOKEN", lambda: run("openssl", "rand", "-hex", "16").stdout.strip()),
    ("auth-jwt-key", "jwt-es256.pem",
     lambda: run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256").stdout),
)


def secrets():
    """The Secrets of SECRETS as Kubernetes documents, each with a fresh value."""
    return [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque",
             "data": {key: base64.b64encode(make().encode()).decode()}}
            for name, key, make in SECRETS]


def pod_from(workload, template, name, aliases, restart=None):
    spec = json.loads(json.dumps(template["spec"]))
    spec["hostAliases"] = aliases
    if restart:
        spec["restartPolicy"] = restart
    # Podman 4.3 makes an emptyDir a named volume called after the pod's volume, so every pod
    # with an emptyDir "data" would share one: each gets a name of its own, as on a node.
    for volume in spec.get("volumes", []):
        if "emptyDir" in volume:
            unique = f"{name}-{volume['name']}"
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                for mount in container.get("volumeMounts", []):
                    if mount["name"] == volume["name"]:
                        mount["name"] = unique
            volume["name"] = unique
    labels = dict(template.get("metadata", {}).get("labels", {}))
    labels[LABEL] = workload["metadata"]["name"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec}


def materialize_secret_volumes(pod, by_name):
    """Each `secret` volume of the pod becomes a named volume `<pod>-<volume>` holding the items."""
    group = pod["spec"].get("securityContext", {}).get("fsGroup", 0)
    for volume in pod["spec"].get("volumes", []):
        source = volume.pop("secret", None)
        if source is None:
            continue
        data = by_name[source["secretName"]]["data"]
        items = source.get("items") or [{"key": key, "path": key} for key in data]
        name = f"{pod['metadata']['name']}-{volume['name']}"
        run("podman", "volume", "create", "--label", f"{LABEL}=secret-volume", name)
        folder = Path(run("podman", "volume", "inspect", "-f", "{{.Mountpoint}}", name).stdout.strip())
        for item in items:
            path = folder / item["path"]
            path.write_bytes(base64.b64decode(data[item["key"]]))
            os.chown(path, 0, group)
            os.chmod(path, item.get("mode", source.get("defaultMode", 0o644)))
        volume["persistentVolumeClaim"] = {"claimName": name, "readOnly": True}


def probe_once(pod, container, probe, address):
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    timeout = probe.get("timeoutSeconds", 1)
    if "httpGet" in probe:
        port = probe["httpGet"]["port"]
        port = ports.get(port, port)
        url = f"http://{address}:{port}{probe['httpGet'].get('path', '/')}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as answer:
                return 200 <= answer.status < 400, f"GET {url} {answer.status}"
        except urllib.error.HTTPError as error:
            return False, f"GET {url} {error.code}"
        except OSError as error:
            return False, f"GET {url}: {error}"
    if "exec" in probe:
        command = probe["exec"]["command"]
        result = run("timeout", str(timeout + 5), "podman", "exec", f"{pod}-{container['name']}", *command, check=False)
        return result.returncode == 0, f"exec {' '.join(command)}: exit {result.returncode} {result.stdout.strip()}"
    if "tcpSocket" in probe:
        import socket
        port = probe["tcpSocket"]["port"]
        port = ports.get(port, port)
        try:
            socket.create_connection((address, port), timeout=timeout).close()
            return True, f"tcp {address}:{port} open"
        except OSError as error:
            return False, f"tcp {address}:{port}: {error}"
    return False, f"unknown probe {probe}"


def wait_ready(pod, container, address, limit=120):
    probe = container.get("readinessProbe")
    if not probe:
        raise SystemExit(f"kube-play: {pod}/{container['name']} has no readiness probe")
    deadline = time.monotonic() + limit
    while True:
        ok, detail = probe_once(pod, container, probe, address)
        if ok:
            return detail
        if time.monotonic() > deadline:
            raise SystemExit(f"kube-play: {pod}/{container['name']} not ready after {limit} s: {detail}")
        time.sleep(1)


def check_security(pod, container, pod_security):
    """The container runs as the manifest says: user, read-only root, no capabilities."""
    name = f"{pod}-{container['name']}"
    info = json.loads(run("podman", "inspect", name).stdout)[0]
    context = container.get("securityContext", {})
    problems = []
    uid = context.get("runAsUser", pod_security.get("runAsUser"))
    top = run("podman", "exec", name, "cat", "/proc/1/status", check=False).stdout
    real_uid = next((line.split()[1] for line in top.splitlines() if line.startswith("Uid:")), "?")
    if uid is not None and real_uid != str(uid):
        problems.append(f"runs as uid {real_uid}, manifest says {uid}")
    if pod_security.get("runAsNonRoot") and real_uid == "0":
        problems.append("runs as root although runAsNonRoot")
    if context.get("readOnlyRootFilesystem") and not info["HostConfig"].get("ReadonlyRootfs"):
        problems.append("root filesystem is writable")
    if context.get("readOnlyRootFilesystem"):
        # As uid 0 (the owner of /): only a read-only filesystem refuses it.
        wrote = run("podman", "exec", "--user", "0", name, "sh", "-c", "echo x > /titanium-write-test", check=False)
        if wrote.returncode == 0:
            problems.append("could write to /")
    if "ALL" in context.get("capabilities", {}).get("drop", []):
        caps = next((line.split()[1] for line in top.splitlines() if line.startswith("CapEff:")), "?")
        if caps != "0000000000000000":
            problems.append(f"effective capabilities {caps}")
    if problems:
        raise SystemExit(f"kube-play: {name}: " + "; ".join(problems))
    return f"uid {real_uid}, read-only root, no capabilities" if context.get("readOnlyRootFilesystem") else f"uid {real_uid}"


def up(overlay):
    rendered = list(yaml.safe_load_all(run(os.environ.get("KUBECTL", "kubectl"), "kustomize", str(ROOT / overlay)).stdout))
    skipped = sorted({d["kind"] for d in rendered if d["kind"] not in ("ConfigMap", "PersistentVolumeClaim", "Deployment")})
    say("not played (a cluster's job): " + ", ".join(skipped))
    deployments = [d for d in rendered if d["kind"] == "Deployment"]
    services = [d for d in rendered if d["kind"] == "Service"]
    addresses = {d["metadata"]["name"]: f"{SUBNET_PREFIX}{10 + i}" for i, d in enumerate(deployments)}
    aliases = []
    for deployment in deployments:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        names = [s["metadata"]["name"] for s in services if matches(s["spec"].get("selector"), labels)]
        if names:
            aliases.append({"ip": addresses[deployment["metadata"]["name"]], "hostnames": names})
    documents = [d for d in rendered if d["kind"] in ("ConfigMap", "PersistentVolumeClaim")]
    pods = [pod_from(d, d["spec"]["template"], d["metadata"]["name"], aliases) for d in deployments]
    made_secrets = secrets()
    down(quiet=True)
    # Podman 4.3 stores a Secret document of the played file as YAML and then fails to read it
    # back, and crashes on a `secret` volume (VolumeFromSecret, nil pointer). So each Secret is
    # a podman secret holding its `data` as JSON (key to base64), which secretKeyRef reads, and
    # each secret volume is written as the kubelet writes one: a volume holding the items with
    # the volume's defaultMode, group fsGroup (here a named volume the pod mounts instead).
    for secret in made_secrets:
        run("podman", "secret", "create", secret["metadata"]["name"], "-", input=json.dumps(secret["data"]))
    for pod in pods:
        materialize_secret_volumes(pod, {s["metadata"]["name"]: s for s in made_secrets})
    PLAYED.parent.mkdir(parents=True, exist_ok=True)
    PLAYED.write_text(yaml.safe_dump_all(documents + pods, sort_keys=False))
    run("podman", "network", "create", "--subnet", f"{SUBNET_PREFIX}0/24", NETWORK)
    ips = [arg for d in deployments for arg in ("--ip", addresses[d["metadata"]["name"]])]
    started = time.monotonic()
    run("podman", "kube", "play", "--network", NETWORK, *ips, str(PLAYED))
    say(f"podman kube play: {len(pods)} pods from {overlay} in {time.monotonic() - started:.1f} s")

    for pod in pods:
        name = pod["metadata"]["name"]
        for container in pod["spec"]["containers"]:
            detail = wait_ready(name, container, addresses[name])
            security = check_security(name, container, pod["spec"].get("securityContext", {}))
            say(f"{name}/{container['name']} ready after {time.monotonic() - started:.1f} s ({detail}; {security})")

    balancer = next(d for d in deployments if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/name") == "load-balancer")
    stats_url = f"http://{addresses[balancer['metadata']['name']]}:7100/stats"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(stats_url, timeout=5) as answer:
                stats = json.load(answer)
            status = {e["name"]: e["status"] for e in stats["services"]}
        except (OSError, ValueError, KeyError) as error:
            status = {"error": str(error)}
        if set(status) == {"api-gateway", "auth-service", "user-service", "blog-service"} and set(status.values()) == {"ONLINE"}:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"kube-play: {stats_url} does not show every service ONLINE: {status}")
        time.sleep(1)
    say(f"load balancer /stats through the Service names: {status}")

    base = f"http://{addresses[balancer['metadata']['name']]}:7100"
    user = f"kube{int(time.time())}"
    post_json(f"{base}/api/users", {"username": user, "email": f"{user}@example.com", "password": "kube-play-password"})
    post_json(f"{base}/api/auth/login", {"username": user, "password": "kube-play-password"})
    say(f"{user} registered and logged in through the load balancer")

    # Each CronJob's pod, once, as its schedule would start it (with the other pods running).
    for job in (d for d in rendered if d["kind"] == "CronJob"):
        template = job["spec"]["jobTemplate"]["spec"]["template"]
        name = f"{job['metadata']['name']}-manual"
        pod = pod_from(job, template, name, aliases, restart="Never")
        path = PLAYED.with_name(f"{name}.yaml")
        path.write_text(yaml.safe_dump(pod, sort_keys=False))
        # Listed with the rest, so that `down` removes its volumes too.
        PLAYED.write_text(PLAYED.read_text() + "---\n" + yaml.safe_dump(pod, sort_keys=False))
        run("podman", "kube", "play", "--network", NETWORK, str(path))
        container = f"{name}-{template['spec']['containers'][0]['name']}"
        limit = template["spec"].get("activeDeadlineSeconds", job["spec"]["jobTemplate"]["spec"].get("activeDeadlineSeconds", 900))
        code = run("timeout", str(limit), "podman", "wait", container, check=False).stdout.strip()
        logs = run("podman", "logs", container).stdout.strip() + run("podman", "logs", container).stderr.strip()
        if code != "0":
            raise SystemExit(f"kube-play: CronJob {job['metadata']['name']}'s pod exited {code}: {logs}")
        say(f"CronJob {job['metadata']['name']}, run once: {logs.splitlines()[-1] if logs else 'no output'}")
    return rendered, addresses


def post_json(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as error:
        raise SystemExit(f"kube-play: POST {url} answered {error.code}: {error.read()[:300]!r}")


def down(quiet=False):
    for pod in run("podman", "pod", "ps", "-q", "--filter", f"label={LABEL}", check=False).stdout.split():
        run("podman", "pod", "rm", "-f", "-t", "5", pod, check=False)
    if PLAYED.exists():
        for document in yaml.safe_load_all(PLAYED.read_text()):
            if document["kind"] == "PersistentVolumeClaim":
                run("podman", "volume", "rm", "-f", document["metadata"]["name"], check=False)
            if document["kind"] == "Pod":
                for volume in document["spec"].get("volumes", []):
                    if "emptyDir" in volume:
                        run("podman", "volume", "rm", "-f", volume["name"], check=False)
    for volume in run("podman", "volume", "ls", "-q", "--filter", f"label={LABEL}=secret-volume", check=False).stdout.split():
        run("podman", "volume", "rm", "-f", volume, check=False)
    for name, _, _ in SECRETS:
        run("podman", "secret", "rm", name, check=False)
    run("podman", "network", "rm", "-f", NETWORK, check=False)
    if not quiet:
        say("pods, volumes, secrets and network removed")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--overlay", default="k8s-manifests/overlays/local")
    args = parser.parse_args()
    if args.command == "up":
        up(args.overlay)
    else:
        down()


if __name__ == "__main__":
    sys.exit(main())
