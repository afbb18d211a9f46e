-- lib.names: names of a pod's children and the path it is served under.
--
--   names.is_dns1035(s)   -> true when s is an RFC 1035 label as Kubernetes
--                            checks Service names: 1..63 chars of [a-z0-9-],
--                            starting with a letter, ending alphanumeric
--   names.fnv1a64(s)      -> the 64-bit FNV-1a hash of the bytes of s (integer)
--   names.hash_hex(s)     -> that hash as 16 lowercase hex digits
--   names.child(podname)  -> the name shared by the Service, EndpointSlice and
--                            HTTPRoute of that pod (always a DNS-1035 label)
--   names.path(podname)   -> "/" .. podname, the HTTPRoute PathPrefix
--   names.for_pod(pod)    -> { service, endpointslice, httproute, port, path }
--                            or nil, reason when the pod has no name
--
-- A pod name that already is a DNS-1035 label is used as it is. Any other
-- name (dots, a leading digit, more than 63 chars, anything else) becomes
-- "<sanitised prefix>-<hash_hex of the full pod name>": the hash keeps two
-- pod names that sanitise alike apart, and the result is the same on every
-- run. Such a name could in theory equal another pod's literal name; the host
-- never adopts a child owned by another pod, so that shows up as a reported
-- conflict rather than a hijacked route.

local pod = require("lib.pod")

local M = {}

local MAX_LABEL = 63
local HASH_DIGITS = 16
-- room left for the sanitised prefix once "-" and the hash are appended
local MAX_PREFIX = MAX_LABEL - 1 - HASH_DIGITS

function M.is_dns1035(s)
  return type(s) == "string"
    and #s >= 1 and #s <= MAX_LABEL
    and string.find(s, "^[a-z][a-z0-9-]*$") ~= nil
    and string.find(s, "[a-z0-9]$") ~= nil
end

-- FNV-1a with Lua 5.4 integers: multiplication wraps modulo 2^64, which is
-- exactly the arithmetic the algorithm asks for.
local FNV_OFFSET = 0xcbf29ce484222325
local FNV_PRIME = 0x100000001b3

function M.fnv1a64(s)
  local h = FNV_OFFSET
  for i = 1, #s do
    h = (h ~ string.byte(s, i)) * FNV_PRIME
  end
  return h
end

function M.hash_hex(s)
  return string.format("%016x", M.fnv1a64(s))
end

local function sanitise(s)
  s = string.lower(s)
  s = string.gsub(s, "[^a-z0-9-]", "-")
  s = string.gsub(s, "%-%-+", "-")
  s = string.gsub(s, "^%-+", "")
  if not string.find(s, "^[a-z]") then
    s = "p-" .. s
  end
  s = string.sub(s, 1, MAX_PREFIX)
  return (string.gsub(s, "%-+$", ""))
end

function M.child(podname)
  if type(podname) ~= "string" or podname == "" then
    error("names.child: pod name must be a non-empty string, got " .. type(podname), 2)
  end
  if M.is_dns1035(podname) then
    return podname
  end
  return sanitise(podname) .. "-" .. M.hash_hex(podname)
end

function M.path(podname)
  return "/" .. podname
end

-- The port name is here because the Service port and the EndpointSlice port
-- must carry the same one: Envoy Gateway pairs them by name and protocol.
function M.for_pod(p)
  local podname = pod.name(p)
  if not podname then
    return nil, "pod has no metadata.name"
  end
  local child = M.child(podname)
  return {
    service = child,
    endpointslice = child,
    httproute = child,
    port = "http",
    path = M.path(podname),
  }
end

return M
