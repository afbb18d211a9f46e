-- host/fixtures.lua: pods `envoy-router check` renders with the scripts
-- under test. They cover what a cluster will send: a ready pod, one still
-- starting, one not ready, one terminating, IPv6, and names that are not
-- DNS-1035 labels. Raw pod objects, as the API server returns them.

local function pod(name, fields)
  local p = {
    apiVersion = "v1", kind = "Pod",
    metadata = {
      name = name, namespace = "default", uid = "00000000-0000-4000-8000-" .. string.format("%012d", #name),
      labels = { ["envoy-router/enabled"] = "true" },
    },
    spec = { nodeName = "node-1", containers = { { name = "app", ports = { { containerPort = 8080 } } } } },
    status = {
      phase = "Running", podIP = "10.0.0.7", podIPs = { { ip = "10.0.0.7" } },
      conditions = { { type = "Ready", status = "True" } },
    },
  }
  for k, v in pairs(fields or {}) do p[k] = v end
  return p
end

local not_ready = pod("notebook-not-ready")
not_ready.status.conditions[1].status = "False"

local terminating = pod("notebook-terminating")
terminating.metadata.deletionTimestamp = "2026-01-01T00:00:00Z"

local ipv6 = pod("notebook-ipv6")
ipv6.status.podIP = "fd00::7"
ipv6.status.podIPs = { { ip = "fd00::7" } }

local starting = pod("notebook-starting")
starting.status = { phase = "Pending" }

return {
  pod("notebook-1"),
  not_ready,
  terminating,
  ipv6,
  starting,
  pod("1-starts-with-a-digit"),
  pod("name.with.dots"),
  pod(string.rep("long-name-", 20) .. "end"),
}
