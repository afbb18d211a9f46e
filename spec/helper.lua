-- spec/helper.lua: small helpers for busted specs of envoy-router scripts,
-- the default ones and your own. Run specs from the directory that holds
-- scripts/, templates/ and spec/ with `busted --lua=lua5.4 spec/unit`; the
-- .busted file there sets the module path the way the host resolves it.
--
-- For your own --scripts-dir (router.lua, lib/, templates/ side by side,
-- nested rather than the flat "templates.x.lua" form a ConfigMap allows),
-- resolve modules as the host does, yours first and then the built-ins:
--   lpath = "MYDIR/?.lua;./scripts/?.lua;./?.lua"      (in .busted _all)
-- and keep your pod fixtures and golden files under helper.fixtures.
--
--   local helper = require("spec.helper")
--
--   helper.fixtures                  directory of fixtures ("spec/fixtures")
--   helper.default_config            the config the host sends with no flags
--   helper.config(overrides)         -> a copy of default_config with the
--                                       overrides' fields replacing its own
--   helper.pod(name)                 -> a fresh table decoded from
--                                       <fixtures>/pods/<name>.json
--   helper.pod_names()               -> sorted names of all pod fixtures
--   helper.golden(name)              -> decoded <fixtures>/golden/<name>.json
--   helper.render(pod, overrides[, router])
--                                    -> router.children(pod, helper.config(overrides));
--                                       pod is a table or a fixture name,
--                                       router defaults to require("router")
--   helper.find(objects, kind)       -> the one object of that kind, or an error
--   helper.json_problem(value)       -> nil when value crosses into JSON as
--                                       intended, else "path: what is wrong"
--                                       (empty table, mixed or sparse keys, ...)
--   helper.plain(value)              -> value after a JSON encode/decode round
--                                       trip, i.e. what the host would send
--   helper.encode(value)             -> stable, indented JSON with sorted keys
--   helper.operator_render(pod, opts)
--                                    -> the children exactly as the operator
--                                       writes them (its sandbox, budgets and
--                                       stamps: namespace, labels,
--                                       ownerReference), by running
--                                       `envoy-router render`; or nil and its
--                                       error text. opts: scripts_dir, args
--                                       (a list of flags), bin (default
--                                       $ENVOY_ROUTER_BIN, else
--                                       build/envoy-router)
--   helper.assert_golden(name, objects)
--                                    asserts the objects equal the golden file
--                                    (keys in any order, 80 == 80.0); with
--                                    ENVOY_ROUTER_UPDATE_GOLDEN=1 in the
--                                    environment it rewrites the file instead:
--                                    read the diff before you keep it.

local cjson = require("cjson")
local lfs = require("lfs")
local luassert = require("luassert")

local helper = {}

helper.fixtures = "spec/fixtures"

helper.default_config = {
  gatewayName = "envoy-router",
  servicePort = 80,
  podPort = 8080,
  hostnames = {},
  rewritePrefix = false,
  headless = true,
  extra = {},
}

local function copy(v)
  if type(v) ~= "table" then
    return v
  end
  local out = {}
  for k, x in pairs(v) do
    out[k] = copy(x)
  end
  return out
end

function helper.config(overrides)
  local cfg = copy(helper.default_config)
  for k, v in pairs(overrides or {}) do
    cfg[k] = copy(v)
  end
  return cfg
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then
    error("cannot open " .. tostring(err), 3)
  end
  local text = f:read("a")
  f:close()
  return text
end

local function read_json(path)
  local ok, value = pcall(cjson.decode, read_file(path))
  if not ok then
    error(path .. ": " .. tostring(value), 3)
  end
  return value
end

function helper.pod(name)
  return read_json(helper.fixtures .. "/pods/" .. name .. ".json")
end

function helper.pod_names()
  local dir = helper.fixtures .. "/pods"
  local names = {}
  for entry in lfs.dir(dir) do
    local name = string.match(entry, "^(.+)%.json$")
    if name then
      names[#names + 1] = name
    end
  end
  table.sort(names)
  return names
end

function helper.golden(name)
  return read_json(helper.fixtures .. "/golden/" .. name .. ".json")
end

function helper.render(pod, overrides, router)
  if type(pod) == "string" then
    pod = helper.pod(pod)
  end
  router = router or require("router")
  return router.children(pod, helper.config(overrides))
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

function helper.operator_render(pod, opts)
  opts = opts or {}
  if type(pod) == "string" then
    pod = helper.pod(pod)
  end
  local bin = opts.bin or os.getenv("ENVOY_ROUTER_BIN") or "build/envoy-router"
  local file, errfile = os.tmpname(), os.tmpname()
  local f = assert(io.open(file, "w"))
  f:write(cjson.encode(pod))
  f:close()
  local cmd = { shell_quote(bin), "render", "--pod", shell_quote(file) }
  if opts.scripts_dir then
    cmd[#cmd + 1] = "--scripts-dir " .. shell_quote(opts.scripts_dir)
  end
  for _, a in ipairs(opts.args or {}) do cmd[#cmd + 1] = shell_quote(a) end
  local p = assert(io.popen(table.concat(cmd, " ") .. " 2>" .. errfile))
  local out = p:read("a")
  local ok = p:close()
  local e = io.open(errfile)
  local err = e and e:read("a") or ""
  if e then e:close() end
  os.remove(file)
  os.remove(errfile)
  if not ok then
    return nil, err
  end
  return cjson.decode(out)
end

function helper.find(objects, kind)
  local found
  for _, obj in ipairs(objects) do
    if obj.kind == kind then
      if found then
        error("more than one " .. kind, 2)
      end
      found = obj
    end
  end
  if not found then
    error("no " .. kind .. " among the objects", 2)
  end
  return found
end

-- A Lua table becomes a JSON array when its keys are exactly 1..n and an
-- object when they are all strings; an empty table is ambiguous (lua-cjson
-- writes {}), so none may appear.
local function problem(v, path)
  local t = type(v)
  if t == "string" or t == "boolean" then
    return nil
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      return path .. ": number is not finite"
    end
    return nil
  elseif t ~= "table" then
    return path .. ": a " .. t .. " has no JSON form"
  end
  if next(v) == nil then
    return path .. ": empty table (lua-cjson writes {}); leave the field out"
  end
  local count, strings = 0, 0
  for k in pairs(v) do
    count = count + 1
    if type(k) == "string" then
      strings = strings + 1
    end
  end
  if strings == count then
    local keys = {}
    for k in pairs(v) do
      keys[#keys + 1] = k
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local p = problem(v[k], path .. "." .. k)
      if p then
        return p
      end
    end
    return nil
  end
  if strings > 0 or #v ~= count then
    return path .. ": keys are neither 1..n nor all strings"
  end
  for i = 1, count do
    local p = problem(v[i], path .. "[" .. i .. "]")
    if p then
      return p
    end
  end
  return nil
end

function helper.json_problem(value)
  return problem(value, "$")
end

function helper.plain(value)
  return cjson.decode(cjson.encode(value))
end

local function encode_string(s)
  -- lua-cjson escapes "/" as "\/"; undo that, pair by pair, for readability
  return (string.gsub(cjson.encode(s), "\\(.)", function(c)
    if c == "/" then
      return "/"
    end
    return "\\" .. c
  end))
end

local function encode(v, indent)
  local t = type(v)
  if t == "string" then
    return encode_string(v)
  elseif t == "number" then
    if math.tointeger(v) then
      return string.format("%d", math.tointeger(v))
    end
    return string.format("%.17g", v)
  elseif t == "boolean" then
    return tostring(v)
  elseif t ~= "table" then
    error("cannot encode a " .. t)
  end
  local inner = indent .. "  "
  local parts = {}
  if #v > 0 then
    for i = 1, #v do
      parts[i] = inner .. encode(v[i], inner)
    end
    return "[\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "]"
  end
  local keys = {}
  for k in pairs(v) do
    keys[#keys + 1] = k
  end
  if #keys == 0 then
    return "{}"
  end
  table.sort(keys)
  for i, k in ipairs(keys) do
    parts[i] = inner .. encode_string(k) .. ": " .. encode(v[k], inner)
  end
  return "{\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "}"
end

function helper.encode(value)
  return encode(value, "")
end

function helper.assert_golden(name, objects)
  local path = helper.fixtures .. "/golden/" .. name .. ".json"
  if os.getenv("ENVOY_ROUTER_UPDATE_GOLDEN") == "1" then
    local f = assert(io.open(path, "wb"))
    f:write(helper.encode(objects), "\n")
    f:close()
  end
  luassert.same(helper.golden(name), helper.plain(objects))
end

return helper
