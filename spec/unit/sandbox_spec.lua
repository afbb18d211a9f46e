-- The scripts in the host's real sandbox (host/sandbox.c, through the
-- binary's `render` and `check`), not in a stand-in: the same children as
-- under busted, no global written, denied libraries absent, and the globals
-- the sandbox offers are exactly those .luacheckrc lets scripts use.
-- Needs build/envoy-router (or $ENVOY_ROUTER_BIN), as `make test-lua` builds.
local helper = require("spec.helper")

local BIN = os.getenv("ENVOY_ROUTER_BIN") or "build/envoy-router"

local function read(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local text = f:read("a")
  f:close()
  return text
end

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- A scripts dir holding router.lua = text; returns its path.
local function scripts_dir(text)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir " .. quote(dir)))
  local f = assert(io.open(dir .. "/router.lua", "w"))
  f:write(text)
  f:close()
  return dir
end

-- Runs `envoy-router check` on a router.lua; returns ok, stdout, stderr.
local function check(router)
  local dir = scripts_dir(router)
  local errfile = os.tmpname()
  local p = assert(io.popen(quote(BIN) .. " check --scripts-dir " .. quote(dir) .. " 2>"
    .. quote(errfile)))
  local out = p:read("a")
  local ok = p:close()
  local err = read(errfile) or ""
  os.remove(errfile)
  os.execute("rm -rf " .. quote(dir))
  return ok, out, err
end

-- The host stamps (labels, ownerReference, a Service's finalizer
-- foregroundDeletion) taken off, so the operator's output compares with
-- what the scripts return under busted.
local function unstamped(children)
  for _, c in ipairs(children) do
    local md = c.metadata
    md.ownerReferences = nil
    if c.kind == "Service" then
      assert.same({ "foregroundDeletion" }, md.finalizers)
      md.finalizers = nil
    end
    md.labels["app.kubernetes.io/managed-by"] = nil
    md.labels["envoy-router/pod"] = nil
    if next(md.labels) == nil then md.labels = nil end
  end
  return children
end

local function allow_list()
  local rc = { stds = {}, files = {} }
  assert(load(assert(read(".luacheckrc")), "=.luacheckrc", "t", rc))()
  return rc.stds[rc.std].read_globals
end

describe("scripts in the host's sandbox", function()
  it("give the same children as under busted for every pod fixture", function()
    local variants = {
      { overrides = {}, args = {} },
      { overrides = { rewritePrefix = true, hostnames = { "a.example.com" } },
        args = { "--rewrite-prefix", "true", "--hostname", "a.example.com" } },
    }
    for _, name in ipairs(helper.pod_names()) do
      for _, v in ipairs(variants) do
        local got, err = helper.operator_render(name, { args = v.args })
        local want, want_why = helper.render(name, v.overrides)
        if want then
          assert.is_nil(err, name)
          assert.same(helper.plain(want), helper.plain(unstamped(got)), name)
        else
          assert.is_nil(got, name)
          assert.truthy(err:find(want_why, 1, true), name .. ": " .. tostring(err))
        end
      end
    end
  end)

  it("load every script file without touching a global", function()
    local ok, out, err = check([[
setmetatable(_G, { __newindex = function(_, k) error("script sets global " .. tostring(k), 2) end })
for _, name in ipairs({ "lib.children", "lib.config", "lib.names", "lib.pod",
                        "templates.service", "templates.endpointslice", "templates.httproute" }) do
  assert(require("builtin." .. name), name)
end
return require("builtin.router")]])
    assert.is_true(ok, err)
    assert.truthy(out:find("fixture pods rendered", 1, true), out)
  end)

  it("really is a sandbox: denied globals and modules are absent", function()
    local ok, _, err = check([[
for _, g in ipairs({ "os", "io", "load", "loadfile", "dofile", "debug", "package", "print",
                     "collectgarbage", "coroutine", "unpack" }) do
  assert(_G[g] == nil, g .. " is reachable")
end
assert(math.random == nil and math.randomseed == nil and string.dump == nil, "impure or bytecode")
assert(not pcall(require, "cjson"), "cjson is reachable")
assert(not pcall(require, "spec.helper"), "spec.helper is reachable")
assert(not pcall(setmetatable, {}, { __gc = tostring }), "finalizers are allowed")
return require("builtin.router")]])
    assert.is_true(ok, err)
  end)

  it("offers exactly the globals .luacheckrc allows scripts", function()
    local _, _, err = check([[
local out = {}
local names = {}
for k in pairs(_G) do names[#names + 1] = k end
table.sort(names)
for _, k in ipairs(names) do
  local v = _G[k]
  if type(v) == "table" and k ~= "_G" then
    local fields = {}
    for f in pairs(v) do fields[#fields + 1] = f end
    table.sort(fields)
    out[#out + 1] = k .. "=" .. table.concat(fields, ",")
  else
    out[#out + 1] = k
  end
end
error("GLOBALS " .. table.concat(out, " ") .. " END", 0)]])
    local list = err:match("GLOBALS (.-) END")
    assert.truthy(list, err)
    local sandbox = {}
    for item in list:gmatch("%S+") do
      local k, fields = item:match("^([^=]+)=(.*)$")
      if k then
        local set = {}
        for f in fields:gmatch("[^,]+") do set[#set + 1] = f end
        sandbox[k] = set
      else
        sandbox[item] = true
      end
    end
    local luacheck = {}
    for key, def in pairs(allow_list()) do
      if type(key) == "number" then
        luacheck[def] = true
      else
        local set = {}
        for _, f in ipairs(def.fields) do set[#set + 1] = f end
        table.sort(set)
        luacheck[key] = set
      end
    end
    assert.same(luacheck, sandbox)
  end)
end)
