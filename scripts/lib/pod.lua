-- lib.pod: reading the projected pod the host hands to scripts.
--
-- The pod is decoded JSON, so any field may be missing, and a JSON null may
-- arrive as a non-table sentinel (lua-cjson's cjson.null). Every reader here
-- tolerates both and returns nil (or false) rather than raising.
--
--   pod.get(t, k1, k2, ...)   -> value at t[k1][k2]..., or nil if a step is not a table
--   pod.string(t, k1, ...)    -> like get, but only a non-empty string, else nil
--   pod.name(p), pod.namespace(p), pod.uid(p), pod.node_name(p) -> string or nil
--   pod.ip(p)                 -> status.podIP, else status.podIPs[1].ip, else nil
--   pod.ip_family(ip)         -> "IPv6" when ip contains ':', else "IPv4"
--   pod.is_ready(p)           -> true when the Ready condition has status "True"
--   pod.is_terminating(p)     -> true when metadata.deletionTimestamp is set
--   pod.is_finished(p)        -> true when status.phase is Succeeded or Failed
--   pod.endpoint_conditions(p) -> { ready, serving, terminating } (booleans)

local M = {}

function M.get(t, ...)
  for i = 1, select("#", ...) do
    if type(t) ~= "table" then
      return nil
    end
    t = t[(select(i, ...))]
  end
  return t
end

function M.string(t, ...)
  local v = M.get(t, ...)
  if type(v) == "string" and v ~= "" then
    return v
  end
  return nil
end

function M.name(p)
  return M.string(p, "metadata", "name")
end

function M.namespace(p)
  return M.string(p, "metadata", "namespace")
end

function M.uid(p)
  return M.string(p, "metadata", "uid")
end

function M.node_name(p)
  return M.string(p, "spec", "nodeName")
end

function M.ip(p)
  return M.string(p, "status", "podIP") or M.string(p, "status", "podIPs", 1, "ip")
end

function M.ip_family(ip)
  if string.find(ip, ":", 1, true) then
    return "IPv6"
  end
  return "IPv4"
end

function M.is_ready(p)
  local conditions = M.get(p, "status", "conditions")
  if type(conditions) ~= "table" then
    return false
  end
  for _, c in ipairs(conditions) do
    if M.get(c, "type") == "Ready" then
      return M.get(c, "status") == "True"
    end
  end
  return false
end

function M.is_terminating(p)
  return M.string(p, "metadata", "deletionTimestamp") ~= nil
end

function M.is_finished(p)
  local phase = M.get(p, "status", "phase")
  return phase == "Succeeded" or phase == "Failed"
end

-- Kubernetes' own EndpointSlice controller reports serving from readiness
-- alone, and ready only when the pod is also not being deleted, so a
-- terminating pod keeps serving until it drains.
function M.endpoint_conditions(p)
  local serving = M.is_ready(p)
  local terminating = M.is_terminating(p)
  return {
    ready = serving and not terminating,
    serving = serving,
    terminating = terminating,
  }
end

return M
