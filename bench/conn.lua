-- luacheck: std lua54
-- bench/conn.lua: what the benchmarks share.
--
-- A keep-alive HTTPS connection to the test API server (openssl s_client
-- fed through a FIFO), so a request's end is timed inside this process and
-- not blurred by a process exit, and watch streams (curl -N, one JSON event
-- per line) read line by line. Both authenticate with the cluster's admin
-- token (spec/e2e/support.lua finds it).

package.path = "./?.lua;" .. package.path
local S = require("spec.e2e.support")
local cjson = require("cjson")

local B = { S = S }

local Conn = {}
Conn.__index = Conn

-- Opens the connection. Raises when the API server cannot be reached.
function B.connect()
  local api = S.api_base()
  local host, port = api.server:match("^https://([^:/]+):(%d+)")
  assert(host, "cannot parse API server URL " .. api.server)
  local fifo = os.tmpname()
  os.remove(fifo)
  assert(os.execute("mkfifo " .. S.quote(fifo)))
  local out = assert(io.popen(string.format(
    "echo $$; exec openssl s_client -quiet -nocommands -verify_quiet -verify_return_error "
      .. "-CAfile %s -connect %s:%s < %s 2>/dev/null",
    S.quote(api.cacert), host, port, S.quote(fifo)), "r"))
  local input = assert(io.open(fifo, "w"))
  input:setvbuf("no")
  local pid = tonumber(out:read("l"))
  local c = setmetatable({ out = out, input = input, fifo = fifo, host = host .. ":" .. port,
                           token = api.token, pid = pid }, Conn)
  assert(c:request("GET", "/readyz") == 200, "API server not ready over s_client")
  return c
end

-- Sends one request and reads the whole answer. Returns status, body.
function Conn:request(method, path, body, content_type)
  body = body and (type(body) == "table" and cjson.encode(body) or body) or ""
  local head = {
    method .. " " .. path .. " HTTP/1.1",
    "Host: " .. self.host,
    "Authorization: Bearer " .. self.token,
    "Accept: application/json",
    "Content-Length: " .. #body,
  }
  if #body > 0 then head[#head + 1] = "Content-Type: " .. (content_type or "application/json") end
  self.input:write(table.concat(head, "\r\n") .. "\r\n\r\n" .. body)
  local status_line = assert(self.out:read("l"), "connection closed")
  local status = tonumber(status_line:match("^HTTP/1%.%d (%d+)"))
  local length, chunked
  while true do
    local line = assert(self.out:read("l")):gsub("\r$", "")
    if line == "" then break end
    local k, v = line:match("^([^:]+):%s*(.*)$")
    k = k and k:lower()
    if k == "content-length" then length = tonumber(v) end
    if k == "transfer-encoding" and v:lower():find("chunked") then chunked = true end
  end
  local parts = {}
  if chunked then
    while true do
      local size = tonumber((assert(self.out:read("l")):gsub("\r$", ""):match("^%x+")), 16)
      if size == 0 then
        assert(self.out:read("l"))    -- the blank line after the last chunk
        break
      end
      parts[#parts + 1] = self.out:read(size)
      assert(self.out:read("l"))      -- CRLF after the chunk
    end
  elseif length and length > 0 then
    parts[1] = self.out:read(length)
  end
  return status, table.concat(parts)
end

function Conn:close()
  S.sh("kill " .. self.pid)
  self.input:close()
  self.out:close()
  os.remove(self.fifo)
end

local Watch = {}
Watch.__index = Watch

-- A watch on `path` (a collection) from resourceVersion `rv`.
function B.watch(path, rv)
  local api = S.api_base()
  local url = api.server .. path .. "?watch=1&allowWatchBookmarks=false&resourceVersion=" .. rv
  local cfg = os.tmpname()
  local f = assert(io.open(cfg, "w"))
  f:write('header = "Authorization: Bearer ', api.token, '"\n')
  f:close()
  local pipe = assert(io.popen(string.format("echo $$; exec curl -sN --cacert %s -K %s %s",
    S.quote(api.cacert), S.quote(cfg), S.quote(url)), "r"))
  local pid = tonumber(pipe:read("l"))
  return setmetatable({ pipe = pipe, cfg = cfg, pid = pid }, Watch)
end

-- Reads events until match(type, object) is true; returns the time (S.now)
-- the matching line was read.
function Watch:until_event(match, timeout)
  local deadline = S.now() + (timeout or 30)
  while S.now() < deadline do
    local line = self.pipe:read("l")
    if not line then error("watch stream ended") end
    local t = S.now()
    local ev = cjson.decode(line)
    if match(ev.type, ev.object) then return t end
  end
  error("no matching event within the timeout")
end

function Watch:close()
  -- curl never ends a watch by itself: end it (our own child), then reap it.
  S.sh("kill " .. self.pid)
  self.pipe:close()
  os.remove(self.cfg)
end

-- Sorted copy and the q-quantile (nearest rank) of a list of numbers.
function B.quantile(xs, q)
  local s = {}
  for i, x in ipairs(xs) do s[i] = x end
  table.sort(s)
  local k = math.max(1, math.min(#s, math.ceil(q * #s)))
  return s[k]
end

function B.ms(seconds) return string.format("%.2f ms", seconds * 1000) end

return B
