#!/usr/bin/env python3
"""The kubelet of one Envoy proxy pod, for the data-plane tests.

    proxy.py NAMESPACE GATEWAY STATE_DIR [PORT_OFFSET]

Envoy Gateway (GatewayNamespace mode) answers a Gateway with a Deployment,
ConfigMap, ServiceAccount and Service in the Gateway's namespace. No kubelet
runs in the test cluster, so this program does its job for one replica: it
waits for that Deployment, creates a Pod object from its template (the proxy's
service-account token is bound to it, and Envoy Gateway's xDS server reviews
that token), materialises the pod's volumes (ConfigMaps, Secrets, the
projected token) under STATE_DIR, and runs the template's envoy container as
a child process from its own bootstrap. What it rewrites, and only that:
mount paths (to the materialised directories), $(VAR) references of the
container's env, the xDS host (no cluster DNS: 127.0.0.1), and, with
PORT_OFFSET, the admin and stats ports of the bootstrap (one network namespace
holds every proxy here). --disable-hot-restart stands in for the pod's own
IPC namespace: no proxy here is ever hot-restarted, and without it each
Envoy keeps a file in /dev/shm that outlives a killed proxy (285 of them
had piled up on this machine in a day of test runs).

It stays Envoy's parent (Envoy sets a parent-death signal) and forwards
SIGTERM/SIGINT to it. It writes STATE_DIR/envoy.pid and STATE_DIR/admin-port
and exits with Envoy's status.
"""
import base64
import json
import os
import random
import signal
import subprocess
import sys
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(TOP, ".cache", "bin")
XDS_HOST = "envoy-gateway.envoy-gateway-system.svc.cluster.local."


def kubectl(*args, stdin=None):
    r = subprocess.run([os.path.join(BIN, "kubectl"), *args], input=stdin,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("kubectl %s: %s" % (" ".join(args), r.stderr.strip()))
    return r.stdout


def log(msg):
    print("[proxy %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def wait_deployment(ns, gw, timeout=90):
    deadline = time.time() + timeout
    sel = "gateway.envoyproxy.io/owning-gateway-name=" + gw
    while True:
        items = json.loads(kubectl("get", "deployments", "-n", ns, "-l", sel, "-o", "json"))["items"]
        if items:
            return items[0]
        if time.time() > deadline:
            raise RuntimeError("no proxy Deployment for Gateway %s/%s after %d s "
                               "(is Envoy Gateway running and the GatewayClass accepted?)"
                               % (ns, gw, timeout))
        time.sleep(0.2)


def make_pod(dep):
    """The Pod a ReplicaSet would create from the template (it stays Pending)."""
    ns = dep["metadata"]["namespace"]
    # A random suffix as a ReplicaSet gives: the pod name is Envoy's node id,
    # and Envoy Gateway tells proxies apart by it (two Gateways of the same
    # name in two namespaces would otherwise get each other's config).
    name = "%s-%s" % (dep["metadata"]["name"],
                      "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5)))
    tmpl = dep["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns,
                        "labels": tmpl["metadata"].get("labels", {}),
                        "annotations": tmpl["metadata"].get("annotations", {})},
           "spec": tmpl["spec"]}
    # The pod of an earlier run of this proxy goes, as on a rollout.
    sel = ",".join("%s=%s" % kv for kv in sorted(dep["spec"]["selector"]["matchLabels"].items()))
    kubectl("delete", "pods", "-n", ns, "-l", sel, "--ignore-not-found", "--grace-period=0", "--force")
    kubectl("create", "-f", "-", stdin=json.dumps(pod))
    return name


def write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def materialise(ns, pod, spec, vol_dir):
    """Writes each volume into vol_dir/<volume name>; returns {name: dir}."""
    out = {}
    for v in spec.get("volumes", []):
        d = os.path.join(vol_dir, v["name"])
        os.makedirs(d, exist_ok=True)
        out[v["name"]] = d
        if "configMap" in v or "secret" in v:
            src = v.get("configMap") or v.get("secret")
            kind = "configmap" if "configMap" in v else "secret"
            obj = json.loads(kubectl("get", kind, src.get("name") or src.get("secretName"),
                                     "-n", ns, "-o", "json"))
            data = {k: (base64.b64decode(x) if kind == "secret" else x.encode())
                    for k, x in (obj.get("data") or {}).items()}
            items = src.get("items") or [{"key": k, "path": k} for k in data]
            for it in items:
                write(os.path.join(d, it["path"]), data[it["key"]])
        elif "projected" in v:
            for s in v["projected"]["sources"]:
                t = s.get("serviceAccountToken")
                if not t:
                    raise RuntimeError("volume %s: unsupported projected source %s" % (v["name"], s))
                tok = kubectl("create", "token", spec.get("serviceAccountName", "default"),
                              "-n", ns, "--audience", t["audience"], "--duration", "24h",
                              "--bound-object-kind", "Pod", "--bound-object-name", pod).strip()
                write(os.path.join(d, t["path"]), tok.encode(), 0o600)
        else:
            raise RuntimeError("volume %s: unsupported kind %s" % (v["name"], list(v)))
    return out


def main():
    ns, gw, state = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3])
    offset = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    os.makedirs(state, exist_ok=True)
    dep = wait_deployment(ns, gw)
    spec = dep["spec"]["template"]["spec"]
    pod = make_pod(dep)
    vols = materialise(ns, pod, spec, os.path.join(state, "volumes"))
    c = next(c for c in spec["containers"] if c["name"] == "envoy")

    # Longest mount path first, so /var/run/secrets/token wins over a prefix.
    mounts = sorted(((m["mountPath"], vols[m["name"]]) for m in c.get("volumeMounts", [])),
                    key=lambda m: -len(m[0]))
    env = {"ENVOY_POD_NAME": pod, "ENVOY_POD_NAMESPACE": ns, "ENVOY_SERVICE_ZONE": ""}

    def rewrite(s):
        for k, v in env.items():
            s = s.replace("$(%s)" % k, v)
        for path, d in mounts:
            s = s.replace(path + "/", d + "/")
        s = s.replace(XDS_HOST, "127.0.0.1")
        if offset:
            for p in (19000, 19001):
                s = s.replace("port_value: %d" % p, "port_value: %d" % (p + offset))
        return s

    for d in vols.values():  # SDS files name files in other mounts
        for f in os.listdir(d):
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                raw = fh.read()
            try:
                text = raw.decode()
            except UnicodeDecodeError:
                continue
            if rewrite(text) != text:
                write(p, rewrite(text).encode())
    cmd = [os.path.join(BIN, "envoy") if a == "envoy" else a for a in c["command"]]
    cmd += [rewrite(a) for a in c.get("args", [])] + ["--disable-hot-restart"]
    with open(os.path.join(state, "admin-port"), "w") as f:
        f.write("%d\n" % (19000 + offset))
    envoy = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    with open(os.path.join(state, "envoy.pid"), "w") as f:
        f.write("%d\n" % envoy.pid)
    log("envoy pid %d for Gateway %s/%s (pod %s, admin port %d)"
        % (envoy.pid, ns, gw, pod, 19000 + offset))

    def forward(sig, _frame):
        envoy.send_signal(sig)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    sys.exit(envoy.wait())


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as e:
        log("error: %s" % e)
        sys.exit(1)
