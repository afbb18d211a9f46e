-- Turns helm-unittest's JUnit report into TAP lines, one per test case:
--
--   lua5.4 spec/helm/unittest-tap.lua LABEL REPORT.xml
--
-- prints "ok - LABEL: <template suite>: <test>" or "not ok - ..." followed by
-- the failure as "# " diagnostics. Exit status 1 when the report is missing,
-- holds no test case, or a case failed.
local label, path = arg[1], arg[2]
if not (label and path) then
  io.stderr:write("usage: unittest-tap.lua LABEL REPORT.xml\n")
  os.exit(2)
end

local f = io.open(path, "r")
if not f then
  print(string.format("not ok - %s: no helm-unittest report at %s", label, path))
  os.exit(1)
end
local xml = f:read("a")
f:close()

local entities = { lt = "<", gt = ">", amp = "&", quot = '"', apos = "'" }
local function unescape(s)
  s = s:gsub("&#[xX](%x+);", function(h) return utf8.char(tonumber(h, 16)) end)
  s = s:gsub("&#(%d+);", function(d) return utf8.char(tonumber(d)) end)
  return (s:gsub("&(%a+);", function(e) return entities[e] or ("&" .. e .. ";") end))
end

local function attr(attrs, name)
  local v = attrs:match("%s" .. name .. '="([^"]*)"')
  return v and unescape(v) or "?"
end

local cases, failed = 0, 0
-- A case is <testcase .../> or <testcase ...>body</testcase>.
for attrs, selfclose, rest in xml:gmatch("<testcase(%s[^>]-)(/?)>()") do
  local body = ""
  if selfclose == "" then
    body = xml:match("^(.-)</testcase>", rest) or ""
  end
  cases = cases + 1
  local name = string.format("%s: %s: %s", label, attr(attrs, "classname"), attr(attrs, "name"))
  name = name:gsub("[\r\n]", " ")
  local failure = body:match("<failure.->(.-)</failure>") or body:match("<error.->(.-)</error>")
  local bad = failure or body:find("<failure", 1, true) or body:find("<error", 1, true)
  if bad then
    failed = failed + 1
    print("not ok - " .. name)
    for line in unescape(failure or ""):gmatch("[^\n]+") do
      line = line:gsub("\t", "  "):gsub("%s+$", "")
      if line:match("%S") then print("#   " .. line) end
    end
  elseif body:find("<skipped", 1, true) then
    print("ok - " .. name .. " # SKIP")
  else
    print("ok - " .. name)
  end
end

if cases == 0 then
  print(string.format("not ok - %s: the helm-unittest report holds no test case", label))
  os.exit(1)
end
os.exit(failed == 0 and 0 or 1)
