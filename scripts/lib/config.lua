-- lib.config: the config table the host builds from its flags, with defaults.
--
--   config.defaults            -> the defaults (do not modify; normalize copies)
--   config.normalize(cfg)      -> a new table with every field present and
--                                 checked; cfg may be nil or partial
--
-- Normalized fields:
--   gatewayName       string, default "envoy-router"
--   gatewayNamespace  string or nil; "" or absent means the pod's namespace
--   servicePort       integer 1..65535, default 80
--   podPort           integer 1..65535, default 8080
--   hostnames         array of strings (a copy), default {}
--   rewritePrefix     boolean, default false
--   headless          boolean, default true
--   extra             table of string -> string (a copy), default {}
--
-- A value of the wrong type is a bug in the caller and raises an error.
-- Ports may come as floats (8080.0 from JSON); they are turned into integers.

local M = {}

M.defaults = {
  gatewayName = "envoy-router",
  gatewayNamespace = nil,
  servicePort = 80,
  podPort = 8080,
  hostnames = {},
  rewritePrefix = false,
  headless = true,
  extra = {},
}

local function fail(field, want, got)
  error(string.format("config.%s: expected %s, got %s", field, want, type(got)), 3)
end

local function port(cfg, field)
  local v = cfg[field]
  if v == nil then
    return M.defaults[field]
  end
  local n = type(v) == "number" and math.tointeger(v) or nil
  if not n or n < 1 or n > 65535 then
    error(string.format("config.%s: expected an integer port 1..65535, got %s",
      field, tostring(v)), 2)
  end
  return n
end

local function boolean(cfg, field)
  local v = cfg[field]
  if v == nil then
    return M.defaults[field]
  end
  if type(v) ~= "boolean" then
    fail(field, "a boolean", v)
  end
  return v
end

local function gateway_name(cfg)
  local v = cfg.gatewayName
  if v == nil or v == "" then
    return M.defaults.gatewayName
  end
  if type(v) ~= "string" then
    fail("gatewayName", "a string", v)
  end
  return v
end

local function gateway_namespace(cfg)
  local v = cfg.gatewayNamespace
  if v == nil or v == "" then
    return nil
  end
  if type(v) ~= "string" then
    fail("gatewayNamespace", "a string", v)
  end
  return v
end

local function hostnames(cfg)
  local v = cfg.hostnames
  local out = {}
  if v == nil then
    return out
  end
  if type(v) ~= "table" then
    fail("hostnames", "an array of strings", v)
  end
  for i, h in ipairs(v) do
    if type(h) ~= "string" or h == "" then
      error(string.format("config.hostnames[%d]: expected a non-empty string", i), 2)
    end
    out[i] = h
  end
  return out
end

local function extra(cfg)
  local v = cfg.extra
  local out = {}
  if v == nil then
    return out
  end
  if type(v) ~= "table" then
    fail("extra", "a table", v)
  end
  for k, x in pairs(v) do
    if type(k) ~= "string" or type(x) ~= "string" then
      error("config.extra: keys and values must be strings", 2)
    end
    out[k] = x
  end
  return out
end

function M.normalize(cfg)
  if cfg == nil then
    cfg = {}
  elseif type(cfg) ~= "table" then
    error("config: expected a table, got " .. type(cfg), 2)
  end
  return {
    gatewayName = gateway_name(cfg),
    gatewayNamespace = gateway_namespace(cfg),
    servicePort = port(cfg, "servicePort"),
    podPort = port(cfg, "podPort"),
    hostnames = hostnames(cfg),
    rewritePrefix = boolean(cfg, "rewritePrefix"),
    headless = boolean(cfg, "headless"),
    extra = extra(cfg),
  }
end

return M
