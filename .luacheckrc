-- luacheck configuration: `luacheck scripts templates spec`.
--
-- `sandbox` is the allow-list of globals policy scripts (scripts/ and
-- templates/) may use, field by field: exactly allowed_globals and
-- allowed_fields in host/sandbox.c, which spec/unit/sandbox_spec.lua checks
-- by listing the globals of the real sandbox. math.random and
-- math.randomseed are gone: scripts must be pure. Lua 5.4 has no global
-- unpack; use table.unpack.

local sandbox = {
  read_globals = {
    "assert", "error", "ipairs", "pairs", "next", "pcall", "select",
    "tonumber", "tostring", "type", "xpcall", "rawequal", "rawget", "rawlen",
    "rawset", "setmetatable", "getmetatable", "require", "_G", "_VERSION",
    string = { fields = {
      "byte", "char", "find", "format", "gmatch", "gsub", "len", "lower",
      "match", "pack", "packsize", "rep", "reverse", "sub", "unpack", "upper",
    } },
    table = { fields = {
      "concat", "insert", "move", "pack", "remove", "sort", "unpack",
    } },
    math = { fields = {
      "abs", "acos", "asin", "atan", "ceil", "cos", "deg", "exp", "floor",
      "fmod", "huge", "log", "max", "maxinteger", "min", "mininteger", "modf",
      "pi", "rad", "sin", "sqrt", "tan", "tointeger", "type", "ult",
    } },
    utf8 = { fields = {
      "char", "charpattern", "codepoint", "codes", "len", "offset",
    } },
    -- present in the operator, absent under busted: scripts should not need it
    host = { fields = { "log" } },
  },
}

stds.envoy_router_sandbox = sandbox
std = "envoy_router_sandbox"
max_line_length = 100

files["spec"] = { std = "lua54+busted" }
-- End-to-end specs hold inline scripts and shell commands; a little more room.
files["spec/e2e"] = { std = "lua54+busted", max_line_length = 120 }
-- The host's own trusted Lua (compiled in) may use the whole standard library.
files["host"] = { std = "lua54", max_line_length = 110 }
