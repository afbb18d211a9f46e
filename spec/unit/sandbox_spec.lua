-- Runs the scripts the way the host does: text chunks in an environment that
-- holds only the globals .luacheckrc allows (library tables trimmed to the
-- allowed fields), a require that resolves only router, lib.X and
-- templates.X, and no `host` table. Writing a global is an error.
local helper = require("spec.helper")

local function read(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local text = f:read("a")
  f:close()
  return text
end

local function allow_list()
  local rc = { stds = {}, files = {} }
  assert(load(assert(read(".luacheckrc")), "=.luacheckrc", "t", rc))()
  return rc.stds[rc.std].read_globals
end

local function module_path(name)
  if name == "router" then
    return "scripts/router.lua"
  end
  local lib = string.match(name, "^lib%.([%w_]+)$")
  if lib then
    return "scripts/lib/" .. lib .. ".lua"
  end
  local template = string.match(name, "^templates%.([%w_]+)$")
  if template then
    return "templates/" .. template .. ".lua"
  end
  return nil
end

local function new_sandbox()
  local env = {}
  for key, def in pairs(allow_list()) do
    if type(key) == "number" then
      env[def] = _G[def]
    elseif key ~= "host" then
      local lib = {}
      for _, field in ipairs(def.fields) do
        lib[field] = _G[key][field]
      end
      env[key] = lib
    end
  end
  local loaded = {}
  env.require = function(name)
    if loaded[name] == nil then
      local path = module_path(name)
      local text = path and read(path)
      if not text then
        error("module '" .. tostring(name) .. "' is not among the scripts", 2)
      end
      local chunk = assert(load(text, "@" .. path, "t", env))
      loaded[name] = chunk(name) or true
    end
    return loaded[name]
  end
  setmetatable(env, {
    __newindex = function(_, k) error("script sets global " .. tostring(k), 2) end,
  })
  return env
end

describe("scripts in the host's sandbox", function()
  it("give the same children as under busted for every pod fixture", function()
    local sandboxed = new_sandbox().require("router")
    assert.equal("envoy-router/enabled=true", sandboxed.selector)
    for _, name in ipairs(helper.pod_names()) do
      local variants = { {}, { rewritePrefix = true, hostnames = { "a.example.com" } } }
      for _, overrides in ipairs(variants) do
        local got, got_why = helper.render(name, overrides, sandboxed)
        local want, want_why = helper.render(name, overrides)
        assert.same(helper.plain(want or {}), helper.plain(got or {}), name)
        assert.equal(want_why, got_why, name)
      end
    end
  end)

  it("load every script file without touching a global", function()
    local env = new_sandbox()
    for _, name in ipairs({ "router", "lib.children", "lib.config", "lib.names", "lib.pod",
                            "templates.service", "templates.endpointslice",
                            "templates.httproute" }) do
      assert.is_not_nil(env.require(name), name)
    end
  end)

  it("really is a sandbox: denied globals and modules fail", function()
    local env = new_sandbox()
    assert.is_nil(load("return os", "=t", "t", env)())
    assert.is_nil(load("return io", "=t", "t", env)())
    assert.is_nil(load("return math.random", "=t", "t", env)())
    assert.is_nil(load("return host", "=t", "t", env)())
    assert.has_error(function() env.require("cjson") end,
      "module 'cjson' is not among the scripts")
    assert.has_error(function() env.require("spec.helper") end)
    assert.has_error(function() load("x = 1", "=t", "t", env)() end)
  end)
end)
