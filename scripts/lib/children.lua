-- lib.children: runs a list of templates for one pod.
--
--   children.build(pod, config, templates) -> objects
--                                           | nil, reason
--
-- `templates` is an array of functions template(pod, cfg, names) -> object,
-- called in order; cfg is config.normalize(config) and names is
-- names.for_pod(pod). A template may return nil to contribute nothing; when
-- none contributes anything the result is nil, reason, never an empty list.
--
-- A pod gets no children (nil, reason) when it has no name, no IP yet, or has
-- finished (phase Succeeded or Failed: Kubernetes takes such pods out of
-- endpoints, and their IP may already belong to another pod). A terminating
-- pod still gets its children, with a not-ready endpoint, so traffic drains.
--
-- A template returning something that is not an object with apiVersion, kind
-- and metadata.name, or one that sets ownerReferences or finalizers, is a bug:
-- build raises an error naming the template's index.

local config = require("lib.config")
local names = require("lib.names")
local pod = require("lib.pod")

local M = {}

local function check(obj, i)
  if type(obj) ~= "table" then
    error(string.format("template %d returned a %s, want an object table", i, type(obj)), 0)
  end
  for _, field in ipairs({ "apiVersion", "kind" }) do
    if type(obj[field]) ~= "string" or obj[field] == "" then
      error(string.format("template %d: object has no %s", i, field), 0)
    end
  end
  if pod.string(obj, "metadata", "name") == nil then
    error(string.format("template %d: %s has no metadata.name", i, obj.kind), 0)
  end
  local md = obj.metadata
  if md.ownerReferences ~= nil or md.finalizers ~= nil then
    error(string.format("template %d: %s sets ownerReferences or finalizers; the host owns those",
      i, obj.kind), 0)
  end
end

function M.build(p, cfg, templates)
  local n, why = names.for_pod(p)
  if not n then
    return nil, why
  end
  if not pod.ip(p) then
    return nil, "pod has no IP yet"
  end
  if pod.is_finished(p) then
    return nil, "pod has finished (phase " .. pod.get(p, "status", "phase") .. ")"
  end
  cfg = config.normalize(cfg)
  local out = {}
  for i, template in ipairs(templates) do
    local obj = template(p, cfg, n)
    if obj ~= nil then
      check(obj, i)
      out[#out + 1] = obj
    end
  end
  if #out == 0 then
    -- an empty table would cross into JSON as {} rather than []
    return nil, "no template produced an object"
  end
  return out
end

return M
