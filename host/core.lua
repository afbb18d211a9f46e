-- host/core.lua: the host's own bookkeeping, trusted and compiled in.
--
-- It decodes what the API server sends, keeps the caches (a projection of
-- each selected pod; of each child its identity, owner, version and two
-- hashes: of the desired object it was written from and of the fields our
-- server-side apply owns), and turns one pod key into a plan: the writes that make the
-- pod's children equal to what the user's scripts want. It never writes:
-- host/reconcile.c carries the plan out and reports each result back.
-- It also reads and builds the Lease of leader election (lease_parse,
-- lease_body), so every object's JSON goes through this one state.
--
-- Loaded by host/core.c with (host, cjson); host provides:
--   host.enqueue(key)           queue a pod key ("namespace/name")
--   host.render(pod)            run the user's router.children(pod, config):
--                               list | nil, reason | false, error
--   host.valid(rule, s)         name rules: "dns1035", "subdomain",
--                               "label_key", "label_value"
--   host.path(apiVersion, kind, namespace, name)  API path of an object
--   host.gateway()              the configured Gateway: name, namespace|nil
--   host.now_ms()               monotonic milliseconds (core_set_clock)
--   host.drain_ms()             the route drain delay (core_set_drain)
--   host.hash(v)                FNV-1a of v's canonical text, 16 hex digits

local host, cjson = ...

local M = {}

local MANAGER = "envoy-router"
local MANAGED_BY = "app.kubernetes.io/managed-by"
local POD_LABEL = "envoy-router/pod"
-- The hash of the desired object, kept on each child: a child whose hash
-- differs was written from other flags or templates and gets an apply,
-- which prunes what is no longer desired.
local HASH = "envoy-router/desired-hash"
-- A resourceVersion no object can have (etcd revisions are int64). Sent
-- with the apply that creates a child, it makes that apply fail with 409
-- when the name exists: a create that never takes anything over.
local NEVER_RV = "18446744073709551615"
-- The finalizer the Go operator (chart 0.1.3) put on every pod it
-- selected. Nothing else removes it once that operator is gone, so pods
-- would hang in Terminating: this one takes it off the pods it selects.
local GO_FINALIZER = "envoy-router.comet.ml/finalizer"
-- The garbage collector's finalizer for deletion in the foreground: on a
-- Service, it keeps the Service until its blocking dependents (the pod's
-- HTTPRoutes) are gone.
local FOREGROUND = "foregroundDeletion"
local null = cjson.null

-- lua-cjson escapes every "/" as "\/"; valid JSON, but paths and label
-- keys read badly in logs and `render` output. cjson never leaves a bare
-- "/", so each "\/" it wrote is that escape and can be undone safely.
local function encode(v)
  return (cjson.encode(v):gsub("\\/", "/"))
end

-- The child kinds the host writes, by resource name and by "apiVersion/kind".
local RESOURCES = {
  services = { apiVersion = "v1", kind = "Service", rule = "dns1035" },
  endpointslices = { apiVersion = "discovery.k8s.io/v1", kind = "EndpointSlice", rule = "subdomain" },
  httproutes = { apiVersion = "gateway.networking.k8s.io/v1", kind = "HTTPRoute", rule = "subdomain" },
}
local BY_TYPE = {}
for res, r in pairs(RESOURCES) do
  r.res = res
  BY_TYPE[r.apiVersion .. "/" .. r.kind] = r
end
M.child_resources = { "services", "endpointslices", "httproutes" }

local pods = {}        -- pod key -> projected pod, as JSON text (see pod_of)
local store = {}       -- res -> object key -> observed child
local owner_of = {}    -- res -> object key -> owning pod key
-- pod key -> its children's ids ("res\0objkey"), one per line (a string:
-- a table per pod costs several times as much at 10,000 pods)
local owned = {}
-- res -> { object key -> true } while a list of res is in progress (not
-- kept between lists: a table entry per object costs memory at 10,000 pods)
local listing = {}
-- "res\0objkey" -> true: a create of that name met an object that is not
-- ours (409). Until a create of it succeeds, its pod gets no children at
-- all: an EndpointSlice or HTTPRoute beside someone else's Service would
-- feed the pod into that Service.
local taken = {}
-- "res\0objkey" -> true: server-side apply was refused (422), e.g. a hand
-- edit left a Service port entry that another field manager owns, which
-- apply cannot remove (equal values are owned jointly, so even a forced
-- apply shares them). The child is ours and broken: the next plan deletes
-- it (uid precondition) and the one after creates it afresh.
local replace = {}
-- "res\0objkey" -> true while an apply that repairs a hand edit (the
-- desired object itself unchanged) is in flight: only such an apply, when
-- refused, leads to a replacement. A refused apply of a changed desired
-- object is the template's fault: reported, and the child left as it is.
local repairing = {}
-- "res\0objkey" -> pod key while the apply that releases a terminating
-- pod's Service (drops its owners) is in flight: its answer queues the pod,
-- whose routes are released only then (see "Draining" in M.reconcile).
local releasing = {}
-- "res\0objkey" -> hash of the owned fields the last apply in flight
-- sent; and, once answered, "desired-hash owned-hash" when the API server
-- keeps those fields in another form than we sent them (defaults inside
-- an atomic list): that form then counts as up to date.
local sent, settled = {}, {}
-- "res\0objkey" -> { [resourceVersion] = true } of the versions the watch
-- (or a list) brought while a create or apply of it was in flight. The
-- watch brings versions in the order they were written, so the answer's
-- version among them means the cache holds it or a newer one, and the
-- answer must not overwrite it; any other version among them is a change
-- that was not reconciled (it arrived as if it were the echo), so the
-- answer queues the pod.
local seen_in_flight = {}
-- "res\0objkey" -> true: a list of res ended while a create or apply of it
-- was in flight. Nothing orders a list's version against the answer's (the
-- list may hold the state before the write, or a change made after it, or
-- no object at all), and the watch resumes after the list, so no event
-- would correct a wrong guess. The answer is then not stored: the pod looks
-- again at what the list brought (a later change is repaired, an earlier
-- state written again, a missing child created, or found ours by a probe).
local relisted = {}
-- "res\0objkey" -> pod key, for the creates and probes in flight: the
-- answer to a probe has to queue the pod, whose key may differ from the
-- child's (hashed names).
local wanted_by = {}
-- "res\0objkey" -> JSON patch body: the child holds fields under an Update
-- entry of our manager (created by POST, as envoy-router did before every
-- write was an apply). The patch hands them to our Apply entry, so the
-- next apply prunes what is no longer desired. Only for such children:
-- an entry goes once the patch is through.
local upgrade = {}
-- object key -> { state, reason, message } of each cached HTTPRoute, read
-- from the conditions its Gateway controller writes (the only part of a
-- route's status the host keeps).
local route_health = {}
-- pod key -> { [route key] = problem }: a route of that pod turned not
-- accepted (or unresolved) and the pod's next plan reports it, once.
local notices = {}
-- pod key -> host.now_ms() when its routes were first seen gone with the
-- rest of its children still to delete (the drain delay counts from it).
local drain_since = {}
-- Kept as the caches change, so stats() costs nothing per pod: cached pods,
-- cached children, and pods that are cached and own at least one child.
local count = { pods = 0, children = 0, managed = 0 }
for res in pairs(RESOURCES) do
  store[res], owner_of[res] = {}, {}
end

local function val(v)
  if v == null then return nil end
  return v
end

local function key_of(md)
  return (val(md.namespace) or "") .. "/" .. (val(md.name) or "")
end

-- The cached projection of pod `key` as a table, or nil.
local function pod_of(key)
  local text = pods[key]
  if text == nil then return nil end
  local pod = cjson.decode(text)
  -- lua-cjson decodes an empty list as an empty table, which is what the
  -- scripts see for an absent one too: nothing to undo. What the key and
  -- the kind say is not stored (see `stored_pod`).
  pod.apiVersion, pod.kind = "v1", "Pod"
  pod.metadata.namespace, pod.metadata.name = key:match("^(.-)/(.*)$")
  return pod
end

-- The few pod fields scripts and reconcile read; a whole pod is ~16 KiB
-- as a table, this is well under 1 KiB. Annotations only when router.lua
-- asks for them (pod_annotations = true).
local function project_pod(o)
  local md, spec, st = o.metadata or {}, val(o.spec) or {}, val(o.status) or {}
  local ann = host.keep_annotations() and val(md.annotations) or nil
  if ann then
    ann["kubectl.kubernetes.io/last-applied-configuration"] = nil
    if next(ann) == nil then ann = nil end
  end
  local containers
  if type(spec.containers) == "table" then
    containers = {}
    for i, c in ipairs(spec.containers) do
      containers[i] = { name = c.name, ports = val(c.ports) }
    end
  end
  local conditions
  if type(st.conditions) == "table" then
    conditions = {}
    for i, c in ipairs(st.conditions) do
      conditions[i] = { type = c.type, status = c.status }
    end
  end
  local go_finalizer
  for i, f in ipairs(val(md.finalizers) or {}) do
    if f == GO_FINALIZER then go_finalizer = i - 1 end
  end
  return {
    apiVersion = "v1",
    kind = "Pod",
    -- Index (0-based) of the Go operator's finalizer in metadata.finalizers.
    go_finalizer = go_finalizer,
    metadata = {
      name = val(md.name), namespace = val(md.namespace), uid = val(md.uid),
      labels = val(md.labels), annotations = ann,
      deletionTimestamp = val(md.deletionTimestamp),
      resourceVersion = val(md.resourceVersion),
    },
    spec = { nodeName = val(spec.nodeName), containers = containers },
    status = {
      phase = val(st.phase), podIP = val(st.podIP), podIPs = val(st.podIPs),
      conditions = conditions,
    },
  }
end

-- The text kept for a pod: its projection without what pod_of knows
-- from the key and the kind (about 60 bytes a pod at 10,000 pods).
local function stored_pod(o)
  local p = project_pod(o)
  p.apiVersion, p.kind, p.metadata.name, p.metadata.namespace = nil, nil, nil, nil
  return encode(p)
end

-- FNV-1a, 64 bits, of a plain value's canonical text (keys sorted,
-- integral numbers without a fraction: lua-cjson decodes every number as a
-- float), as 16 hex digits: a change detector, not a signature. In C
-- (host/canon.c), with the bytes this file's Lua version wrote.
local hash = host.hash
M.hash = hash

-- The part of `v` that the field set `set` (a managedFields fieldsV1 node)
-- covers. A node without children is a leaf or an atomic list or map:
-- the whole value. Keyed list entries ("k:{...}") and set values ("v:...")
-- are looked up in the observed list and kept in its order.
local function extract(set, v)
  if type(set) ~= "table" or type(v) ~= "table" then return v end
  local leaf = true
  for k in pairs(set) do
    if k ~= "." then leaf = false; break end
  end
  if leaf then return v end
  if #v > 0 then
    local pick = {}
    for k, sub in pairs(set) do
      local kind, rest = k:sub(1, 2), k:sub(3)
      if kind == "k:" then
        local ok, want = pcall(cjson.decode, rest)
        for i, item in ipairs(v) do
          local match = ok and type(item) == "table"
          if match then
            for f, x in pairs(want) do
              if item[f] ~= x then match = false; break end
            end
          end
          if match then pick[i] = extract(sub, item); break end
        end
      elseif kind == "v:" then
        local ok, want = pcall(cjson.decode, rest)
        for i, item in ipairs(v) do
          if ok and item == want then pick[i] = item; break end
        end
      elseif kind == "i:" then
        local i = (tonumber(rest) or -1) + 1
        if v[i] ~= nil then pick[i] = extract(sub, v[i]) end
      end
    end
    local idx, out = {}, {}
    for i in pairs(pick) do idx[#idx + 1] = i end
    table.sort(idx)
    for _, i in ipairs(idx) do out[#out + 1] = pick[i] end
    return out
  end
  local out = {}
  for k, sub in pairs(set) do
    if k:sub(1, 2) == "f:" then
      local name = k:sub(3)
      if v[name] ~= nil and v[name] ~= null then out[name] = extract(sub, v[name]) end
    end
  end
  return out
end

-- What apply owns of an object, as the desired object says it: without
-- the fields managedFields never lists (apiVersion, kind, name, namespace).
local function owned_view(o)
  local v = {}
  for k, x in pairs(o) do
    if k ~= "apiVersion" and k ~= "kind" and k ~= "status" then v[k] = x end
  end
  if type(o.metadata) == "table" then
    local md = {}
    for k, x in pairs(o.metadata) do
      if k ~= "name" and k ~= "namespace" and k ~= "uid" and k ~= "resourceVersion" then md[k] = x end
    end
    v.metadata = md
  end
  return v
end

-- The hash of the fields envoy-router's apply owns in an observed object
-- (its "Apply" entry of managedFields), or "-" when it owns none.
local function owned_hash(o)
  local md = val(o.metadata) or {}
  for _, e in ipairs(val(md.managedFields) or {}) do
    if e.manager == MANAGER and e.operation == "Apply" and (val(e.subresource) or "") == "" then
      return hash(extract(val(e.fieldsV1) or {}, owned_view(o)))
    end
  end
  return "-"
end

-- The union of two managedFields field sets (fieldsV1 trees).
local function union(a, b)
  local out = {}
  for k, x in pairs(type(a) == "table" and a or {}) do out[k] = x end
  for k, x in pairs(type(b) == "table" and b or {}) do
    out[k] = out[k] ~= nil and union(out[k], x) or x
  end
  return out
end

-- For a child that holds fields under an Update entry of our manager: the
-- JSON patch that moves them into our Apply entry (a new Apply entry if
-- there is none), as client-go's csaupgrade does, guarded by the observed
-- resourceVersion. nil when there is nothing to hand over.
local function upgrade_patch(o)
  local md = val(o.metadata) or {}
  local entries = val(md.managedFields)
  if type(entries) ~= "table" or val(md.resourceVersion) == nil then return nil end
  local update, apply
  for i, e in ipairs(entries) do
    if e.manager == MANAGER and (val(e.subresource) or "") == "" then
      if e.operation == "Update" then update = i elseif e.operation == "Apply" then apply = i end
    end
  end
  if not update then return nil end
  local out = {}
  for i, e in ipairs(entries) do
    if i == apply then
      e.fieldsV1 = union(val(e.fieldsV1), val(entries[update].fieldsV1))
      out[#out + 1] = e
    elseif i == update and not apply then
      e.operation = "Apply"
      out[#out + 1] = e
    elseif i ~= update then
      out[#out + 1] = e
    end
  end
  return encode({
    { op = "test", path = "/metadata/resourceVersion", value = md.resourceVersion },
    { op = "replace", path = "/metadata/managedFields", value = out },
  })
end

-- Two lowercase hex digits <-> their byte, as gsub replacement tables (a
-- table lookup per pair, not a Lua call).
local BYTE_OF, HEX_OF = {}, {}
for i = 0, 255 do
  local h, c = string.format("%02x", i), string.char(i)
  BYTE_OF[h], HEX_OF[c] = c, h
end

-- Lowercase UUIDs and 16-hex-digit hashes, the longest parts of a packed
-- child, kept as their bytes (16 and 8) behind a tag byte that no
-- Kubernetes uid or annotation starts with; anything else as it is.
local function squeeze(s)
  if #s == 16 and s:find("^[0-9a-f]+$") then
    return "\2" .. string.pack(">i8", math.tointeger(tonumber(s, 16)))
  end
  if #s == 36 and s:find("^[0-9a-f]+%-[0-9a-f]+%-[0-9a-f]+%-[0-9a-f]+%-[0-9a-f]+$") then
    local hex = s:gsub("%-", "")
    if #hex == 32 then
      return "\1" .. (hex:gsub("%x%x", BYTE_OF))
    end
  end
  return s
end

local function unsqueeze(s)
  local tag = s:byte(1)
  if tag == 2 then return string.format("%016x", (string.unpack(">i8", s, 2))) end
  if tag == 1 then
    local hex = s:sub(2):gsub(".", HEX_OF)
    return string.format("%s-%s-%s-%s-%s", hex:sub(1, 8), hex:sub(9, 12), hex:sub(13, 16),
      hex:sub(17, 20), hex:sub(21))
  end
  return s
end

-- A cached child: what reconcile reads, packed in one short string (a
-- child kept whole costs kilobytes; this is about 80 bytes): uid,
-- resourceVersion, flags ("o": our managed-by label, "c": some controller
-- ownerReference, "i": a Service with a cluster IP, "d": being deleted,
-- "g": no finalizer but foregroundDeletion),
-- name and uid of its controller Pod, its desired-hash annotation, the
-- hash of the fields our apply owns ("-" for none); each field behind its
-- length, "" for one that is absent, uids and hashes squeezed. `oh` is
-- owned_hash(o) when the caller has it already.
local function pack_child(o, oh)
  local md = val(o.metadata) or {}
  local labels, ann = val(md.labels), val(md.annotations)
  local flags = "f"
  if type(labels) == "table" and labels[MANAGED_BY] == MANAGER then flags = flags .. "o" end
  if val(md.deletionTimestamp) then flags = flags .. "d" end
  local fin = val(md.finalizers)
  if type(fin) == "table" and #fin == 1 and fin[1] == FOREGROUND then flags = flags .. "g" end
  local spec = val(o.spec)
  if type(spec) == "table" and type(spec.clusterIP) == "string" and spec.clusterIP ~= ""
      and spec.clusterIP ~= "None" then
    flags = flags .. "i"
  end
  local pod_ref
  for _, ref in ipairs(val(md.ownerReferences) or {}) do
    if ref.controller == true then
      flags = flags .. "c"
      if ref.kind == "Pod" then pod_ref = ref end
    end
  end
  local function str(x) return type(x) == "string" and x or "" end
  return string.pack("s1s1s1s1s1s2s1",
    squeeze(str(val(md.uid))), str(val(md.resourceVersion)), flags,
    pod_ref and tostring(pod_ref.name) or "", squeeze(pod_ref and tostring(pod_ref.uid) or ""),
    squeeze(type(ann) == "table" and str(ann[HASH]) or ""), squeeze(oh or owned_hash(o)))
end

local function unpack_child(s)
  local uid, rv, flags, ref_name, ref_uid, ann, oh = string.unpack("s1s1s1s1s1s2s1", s)
  local function opt(x) if x ~= "" then return unsqueeze(x) end end
  return { uid = opt(uid), rv = opt(rv), ours = flags:find("o", 1, true) ~= nil,
           controlled = flags:find("c", 1, true) ~= nil, cluster_ip = flags:find("i", 1, true) ~= nil,
           deleting = flags:find("d", 1, true) ~= nil,
           -- held by our foregroundDeletion finalizer alone: a DELETE with
           -- the Background policy finishes it at once
           foreground_only = flags:find("g", 1, true) ~= nil,
           ref_name = opt(ref_name),
           ref_uid = opt(ref_uid), ann = opt(ann), owned = unsqueeze(oh) }
end

-- What the Gateway controller says about a route (before the child is packed
-- without its status): for each of the route's own parentRefs, the status entry of
-- that parent and its Accepted and ResolvedRefs conditions, ignoring ones
-- written for an older generation of the spec. Returns
-- { state = "accepted" | "not_accepted" | "unresolved" | "pending",
--   reason, message } (reason and message for the two bad states).
-- Shared by every accepted route (never changed).
local ACCEPTED = { state = "accepted" }

-- Pending entries are shared too: routes waiting for the same Gateways
-- since the same second (10,000 routes of a Gateway that has no
-- controller yet) hold one table, not one each. Never changed: a new
-- since or told means another entry.
local pending_alike = setmetatable({}, { __mode = "v" })
local function pending_entry(gateways, since, told)
  local k = string.format("%s\0%s\0%s", gateways, tostring(since), tostring(told))
  local h = pending_alike[k]
  if h == nil then
    h = { state = "pending", gateways = gateways, since = since, told = told }
    pending_alike[k] = h
  end
  return h
end

local function health_of(o)
  local md, spec, st = o.metadata or {}, val(o.spec) or {}, val(o.status) or {}
  local ns, gen = val(md.namespace), val(md.generation)
  local refs, parents = val(spec.parentRefs) or {}, val(st.parents) or {}
  local gateways = {}
  for i, ref in ipairs(refs) do
    gateways[i] = string.format("%s/%s", tostring(val(ref.namespace) or ns), tostring(ref.name))
  end
  if #refs == 0 then return { state = "pending", gateways = "" } end
  local answered, unresolved = 0, nil
  for _, ref in ipairs(refs) do
    local want_ns = val(ref.namespace) or ns
    for _, p in ipairs(parents) do
      local pr = val(p.parentRef) or {}
      if pr.name == ref.name and (val(pr.namespace) or ns) == want_ns
          and (val(pr.kind) or "Gateway") == (val(ref.kind) or "Gateway") then
        local where = string.format("Gateway %s/%s (%s)", want_ns, tostring(ref.name),
          tostring(val(p.controllerName) or "unknown controller"))
        local accepted, resolved
        for _, c in ipairs(val(p.conditions) or {}) do
          local og = val(c.observedGeneration)
          if og == nil or gen == nil or og >= gen then
            if c.type == "Accepted" then accepted = c end
            if c.type == "ResolvedRefs" then resolved = c end
          end
        end
        if accepted and accepted.status == "False" then
          return { state = "not_accepted", reason = tostring(val(accepted.reason) or ""),
                   message = tostring(val(accepted.message) or ""), parent = where }
        end
        if accepted and accepted.status == "True" then
          answered = answered + 1
          -- No ready endpoint is the pod's readiness, not a broken route.
          if resolved and resolved.status == "False" and resolved.reason ~= "EndpointsNotFound" then
            unresolved = unresolved or { state = "unresolved",
              reason = tostring(val(resolved.reason) or ""),
              message = tostring(val(resolved.message) or ""), parent = where }
          end
        end
        break
      end
    end
  end
  if answered < #refs then return { state = "pending", gateways = table.concat(gateways, ", ") } end
  return unresolved or ACCEPTED
end

-- The pod key a child belongs to: its controller ownerReference to a Pod.
-- A child of ours with no ownerReferences at all was released when its pod
-- started terminating (see "Draining" in M.reconcile): it belongs to the pod
-- its envoy-router/pod label names (then the second value is nil).
local function owner_key(o)
  local md = o.metadata or {}
  local refs = val(md.ownerReferences) or {}
  for _, ref in ipairs(refs) do
    if ref.kind == "Pod" and ref.controller == true then
      return (val(md.namespace) or "") .. "/" .. ref.name, ref
    end
  end
  local labels = val(md.labels)
  if #refs == 0 and labels and labels[MANAGED_BY] == MANAGER and type(labels[POD_LABEL]) == "string" then
    return (val(md.namespace) or "") .. "/" .. labels[POD_LABEL], nil
  end
  return nil
end

-- The set of ids pod `pkey` owns, as a table (id -> true).
local function owned_by(pkey)
  local set = {}
  for id in (owned[pkey] or ""):gmatch("[^\n]+") do set[id] = true end
  return set
end

local function link(res, okey, pkey)
  local old = owner_of[res][okey]
  if old == pkey then return end
  local id = res .. "\0" .. okey
  if old and owned[old] then
    local rest = {}
    for other in owned[old]:gmatch("[^\n]+") do
      if other ~= id then rest[#rest + 1] = other end
    end
    owned[old] = #rest > 0 and table.concat(rest, "\n") or nil
    if not owned[old] and pods[old] then count.managed = count.managed - 1 end
  end
  owner_of[res][okey] = pkey
  if pkey then
    if not owned[pkey] and pods[pkey] then count.managed = count.managed + 1 end
    owned[pkey] = owned[pkey] and (owned[pkey] .. "\n" .. id) or id
  end
end

-- Records an object; queues the pod keys it concerns unless quiet. `oh`
-- is owned_hash(o) when the caller has it already.
local function upsert(res, o, quiet, oh)
  local md = o.metadata or {}
  local key = key_of(md)
  if res ~= "pods" and store[res][key] then
    -- The same version of a child we hold (the watch's echo of a write
    -- whose answer came first, or the answer after its echo, or a relist
    -- of an unchanged object): a resourceVersion names one state of one
    -- object, so nothing about it can differ. Packing it again would cost
    -- a walk of its managedFields for nothing.
    local _, rv = string.unpack("s1s1", store[res][key])
    if rv ~= "" and rv == val(md.resourceVersion) then
      if listing[res] then listing[res][key] = true end
      return
    end
  end
  if res == "pods" then
    if not pods[key] then
      count.pods = count.pods + 1
      if owned[key] then count.managed = count.managed + 1 end
    end
    -- Kept as text: a decoded table costs several times its JSON, and a
    -- pod is decoded only when it is reconciled.
    pods[key] = stored_pod(o)
    if listing.pods then listing.pods[key] = true end
    if not quiet then host.enqueue(key) end
    return
  end
  local old = owner_of[res][key]
  local pkey = owner_key(o)
  local same_health = true
  if res == "httproutes" then
    local h, was = health_of(o), route_health[key]
    -- (A new route that no Gateway controller has answered yet has nothing
    -- to report either.)
    same_health = (was ~= nil and was.state == h.state and was.reason == h.reason)
      or (was == nil and h.state == "pending")
    if h.state == "pending" then
      if was and was.state == "pending" then
        h = pending_entry(h.gateways, was.since, was.told)   -- still waiting since then
      else
        h = pending_entry(h.gateways)
      end
    end
    route_health[key] = h
    -- One report per change of state (or of the controller's reason), not
    -- one per status write.
    local bad = h.state == "not_accepted" or h.state == "unresolved"
    if pkey and bad and not (was and was.state == h.state and was.reason == h.reason) then
      notices[pkey] = notices[pkey] or {}
      notices[pkey][key] = {
        reason = h.state == "not_accepted" and "RouteNotAccepted" or "RouteRefsUnresolved",
        message = string.format("HTTPRoute %s is %s by %s: %s: %s", key,
          h.state == "not_accepted" and "not accepted" or "accepted but its backends are not "
          .. "resolved", h.parent, h.reason, h.message),
      }
    elseif pkey and not bad and notices[pkey] then
      notices[pkey][key] = nil
    end
  end
  -- Items of built-in lists carry no apiVersion/kind; desired ones do.
  o.apiVersion, o.kind = RESOURCES[res].apiVersion, RESOURCES[res].kind
  if not store[res][key] then count.children = count.children + 1 end
  upgrade[res .. "\0" .. key] = upgrade_patch(o)
  local packed = pack_child(o, oh)
  -- The watch echoing our own write (cached from its answer already), or
  -- a relist of an unchanged object: nothing new for the pod.
  local same = store[res][key] == packed and old == pkey and same_health
  -- The watch ahead of the answer to our own write of it (in flight):
  -- the answer settles the pod's job, and queues what follows from it.
  -- Reconciling now would plan nothing new (about 700 reconciles of 1,000
  -- new pods were such echoes).
  local id = res .. "\0" .. key
  if sent[id] ~= nil and not quiet then
    seen_in_flight[id] = seen_in_flight[id] or {}
    seen_in_flight[id][val(md.resourceVersion) or ""] = true
  end
  local echo = sent[id] ~= nil and same_health
    and (old == pkey or (old == nil and wanted_by[id] == pkey))
  store[res][key] = packed
  if listing[res] then listing[res][key] = true end
  link(res, key, pkey)
  if not quiet and not same and not echo then
    if pkey then host.enqueue(pkey) end
    if old and old ~= pkey then host.enqueue(old) end
  end
end

local function remove(res, key, quiet)
  if res == "pods" then
    if pods[key] then
      count.pods = count.pods - 1
      if owned[key] then count.managed = count.managed - 1 end
      pods[key] = nil
      if not quiet then host.enqueue(key) end
    end
    return
  end
  if store[res][key] == nil then return end
  local pkey = owner_of[res][key]
  local id = res .. "\0" .. key
  sent[id], settled[id], replace[id], repairing[id], upgrade[id] = nil, nil, nil, nil, nil
  seen_in_flight[id], releasing[id] = nil, nil
  count.children = count.children - 1
  store[res][key] = nil
  if res == "httproutes" then
    route_health[key] = nil
    if pkey and notices[pkey] then notices[pkey][key] = nil end
  end
  link(res, key, nil)
  if pkey and not quiet then host.enqueue(pkey) end
end

-- Lists ------------------------------------------------------------------

-- A (re)list of `res` starts: objects not seen again by list_end go.
function M.list_begin(res)
  listing[res] = {}
end

-- One page of a list response. Returns resourceVersion, continue token.
function M.list_page(res, body)
  local list = cjson.decode(body)
  for _, o in ipairs(val(list.items) or {}) do
    -- Items of a list carry no kind; objects from writes and watches do.
    upsert(res, o, false)
  end
  local md = val(list.metadata) or {}
  return val(md.resourceVersion) or "", val(md.continue) or ""
end

-- The list is complete: forget what it did not contain.
function M.list_end(res)
  local got = listing[res] or {}
  listing[res] = nil
  local prefix = res .. "\0"
  for id in pairs(sent) do
    if id:sub(1, #prefix) == prefix then relisted[id] = true end
  end
  local gone = {}
  for key in pairs(res == "pods" and pods or store[res]) do
    if not got[key] then gone[#gone + 1] = key end
  end
  for _, key in ipairs(gone) do remove(res, key, false) end
  return #gone
end

-- One watch event line. Returns type, resourceVersion and, for ERROR,
-- the status code and message.
function M.watch_event(res, line)
  local ev = cjson.decode(line)
  local t, o = ev.type, val(ev.object)
  if type(o) ~= "table" then error("watch event without an object") end
  if t == "ERROR" then
    return t, nil, math.tointeger(val(o.code)) or 0, val(o.message) or ""
  end
  local md = val(o.metadata) or {}
  local rv = val(md.resourceVersion)
  if t == "ADDED" or t == "MODIFIED" then
    upsert(res, o, false)
  elseif t == "DELETED" then
    remove(res, key_of(md), false)
  elseif t ~= "BOOKMARK" then
    error("unknown watch event type " .. tostring(t))
  end
  return t, rv
end

-- Desired children -----------------------------------------------------

local function pod_label(pod, name)
  if host.valid("label_value", pod.metadata.name) then return pod.metadata.name end
  return name
end

-- Checks and stamps one child a script returned. Returns its resource
-- spec, or nil and a message naming what is wrong.
local function stamp(pod, child, i)
  if type(child) ~= "table" then
    return nil, string.format("child #%d is a %s, not an object", i, type(child))
  end
  local r = BY_TYPE[tostring(child.apiVersion) .. "/" .. tostring(child.kind)]
  if not r then
    return nil, string.format("child #%d: apiVersion %s kind %s is not one envoy-router writes "
      .. "(v1 Service, discovery.k8s.io/v1 EndpointSlice, gateway.networking.k8s.io/v1 HTTPRoute)",
      i, tostring(child.apiVersion), tostring(child.kind))
  end
  local md = child.metadata
  if type(md) ~= "table" then
    return nil, string.format("child #%d (%s) has no metadata table", i, r.kind)
  end
  local name = md.name
  if type(name) ~= "string" or not host.valid(r.rule, name) then
    return nil, string.format("child #%d: %s name %q is not a valid %s", i, r.kind,
      tostring(name), r.rule == "dns1035" and "DNS-1035 label" or "DNS-1123 subdomain")
  end
  local ns = pod.metadata.namespace
  if md.namespace ~= nil and md.namespace ~= ns then
    return nil, string.format("child #%d: %s %s is in namespace %q; children live in the pod's "
      .. "namespace %q", i, r.kind, name, tostring(md.namespace), ns)
  end
  if md.ownerReferences ~= nil or md.finalizers ~= nil then
    return nil, string.format("child #%d: %s %s sets ownerReferences or finalizers; the host "
      .. "owns those", i, r.kind, name)
  end
  md.namespace = ns
  local labels = md.labels
  if labels == nil then
    labels = {}
    md.labels = labels
  elseif type(labels) ~= "table" then
    return nil, string.format("child #%d: %s %s labels must be a table", i, r.kind, name)
  end
  for k, v in pairs(labels) do
    if type(k) ~= "string" or not host.valid("label_key", k)
        or type(v) ~= "string" or not host.valid("label_value", v) then
      return nil, string.format("child #%d: %s %s has an invalid label %s=%s", i, r.kind,
        name, tostring(k), tostring(v))
    end
  end
  labels[MANAGED_BY] = MANAGER
  labels[POD_LABEL] = pod_label(pod, name)
  md.ownerReferences = { {
    apiVersion = "v1", kind = "Pod", name = pod.metadata.name, uid = pod.metadata.uid,
    controller = true, blockOwnerDeletion = false,
  } }
  -- The collector's own finalizer: see "Deletion order" in M.reconcile.
  if r.kind == "Service" then md.finalizers = { FOREGROUND } end
  return r
end

-- The product's invariants on what scripts may ask for, enforced here
-- because whoever edits the scripts must not be able to widen what the
-- public Gateway reaches: traffic goes to the pod's own IPs, through
-- Services that open nothing outside the cluster, on routes attached to
-- the configured Gateway. Each check returns nil, or what is wrong.
local SERVICE_REFUSED = {
  "selector", "externalIPs", "externalName", "loadBalancerIP", "loadBalancerSourceRanges",
  "loadBalancerClass", "allocateLoadBalancerNodePorts", "externalTrafficPolicy",
  "healthCheckNodePort",
}

local function pod_ips(pod)
  local st, ips = pod.status or {}, {}
  if type(st.podIP) == "string" then ips[st.podIP] = true end
  if type(st.podIPs) == "table" then
    for _, e in ipairs(st.podIPs) do
      if type(e) == "table" and type(e.ip) == "string" then ips[e.ip] = true end
    end
  end
  return ips
end

local function list_of(v)
  if v == nil then return {} end
  if type(v) ~= "table" then return nil end
  return v
end

local function check_service(spec)
  if spec.type ~= nil and spec.type ~= "ClusterIP" then
    return string.format("type %s (only ClusterIP or headless)", tostring(spec.type))
  end
  for _, f in ipairs(SERVICE_REFUSED) do
    if spec[f] ~= nil then return "sets spec." .. f end
  end
  if spec.clusterIP ~= nil and spec.clusterIP ~= "None" and spec.clusterIP ~= "" then
    return "sets spec.clusterIP (only None, or unset)"
  end
  local ips = list_of(spec.clusterIPs)
  if not ips or #ips > 1 or (ips[1] ~= nil and ips[1] ~= "None") then
    return "sets spec.clusterIPs (only None, or unset)"
  end
  local ports = list_of(spec.ports)
  if not ports then return "spec.ports is not a list" end
  for _, port in ipairs(ports) do
    if type(port) == "table" and port.nodePort ~= nil then return "sets a nodePort" end
  end
  return nil
end

local function check_slice(pod, obj, services)
  local svc = obj.metadata.labels["kubernetes.io/service-name"]
  if svc ~= nil and not services[svc] then
    return string.format("is labelled for Service %s, which is not one of this pod's children",
      tostring(svc))
  end
  local ips, md = pod_ips(pod), pod.metadata
  local endpoints = list_of(obj.endpoints)
  if not endpoints then return "endpoints is not a list" end
  for _, e in ipairs(endpoints) do
    if type(e) ~= "table" then return "has an endpoint that is not an object" end
    for _, a in ipairs(list_of(e.addresses) or { false }) do
      if not ips[a] then
        return string.format("points at %s, which is not an IP of pod %s", tostring(a), md.name)
      end
    end
    local ref = e.targetRef
    if type(ref) ~= "table" or ref.kind ~= "Pod" or ref.name ~= md.name
        or (ref.namespace ~= nil and ref.namespace ~= md.namespace)
        or (ref.uid ~= nil and ref.uid ~= md.uid) then
      return "has an endpoint whose targetRef is not the pod " .. md.name
    end
  end
  return nil
end

local function check_backend(pod, ref, services)
  if type(ref) ~= "table" or (ref.kind ~= nil and ref.kind ~= "Service")
      or (ref.group ~= nil and ref.group ~= "")
      or (ref.namespace ~= nil and ref.namespace ~= pod.metadata.namespace)
      or not services[ref.name] then
    return string.format("sends traffic to %s, not to a Service among this pod's children",
      type(ref) == "table" and tostring(ref.name) or tostring(ref))
  end
  return nil
end

local function check_route(pod, spec, services)
  local gw_name, gw_ns = host.gateway()
  local want_ns = gw_ns or pod.metadata.namespace
  local parents = list_of(spec.parentRefs)
  if not parents or #parents == 0 then return "has no parentRefs (the Gateway)" end
  for _, ref in ipairs(parents) do
    local ns = type(ref) == "table" and ref.namespace
    if ns == nil or ns == "" then ns = pod.metadata.namespace end
    if type(ref) ~= "table" or ref.name ~= gw_name or ns ~= want_ns
        or (ref.group ~= nil and ref.group ~= "gateway.networking.k8s.io")
        or (ref.kind ~= nil and ref.kind ~= "Gateway") then
      return string.format("is attached to %s; routes attach only to Gateway %s/%s",
        type(ref) == "table" and (tostring(ref.namespace or "") .. "/" .. tostring(ref.name))
          or tostring(ref), want_ns, gw_name)
    end
  end
  local rules = list_of(spec.rules)
  if not rules then return "spec.rules is not a list" end
  for _, rule in ipairs(rules) do
    if type(rule) ~= "table" then return "has a rule that is not an object" end
    for _, ref in ipairs(list_of(rule.backendRefs) or { false }) do
      local why = check_backend(pod, ref, services)
      if why then return why end
    end
    for _, f in ipairs(list_of(rule.filters) or {}) do
      if type(f) == "table" and f.requestMirror ~= nil then
        local why = check_backend(pod, type(f.requestMirror) == "table"
          and f.requestMirror.backendRef, services)
        if why then return "mirror " .. why end
      end
    end
  end
  return nil
end

-- Checks the stamped children of one pod against the invariants.
local function check_invariants(pod, out)
  local services = {}
  for _, d in ipairs(out) do
    if d.r.res == "services" then services[d.obj.metadata.name] = true end
  end
  for i, d in ipairs(out) do
    local obj, why = d.obj
    if d.r.res == "services" then
      why = check_service(type(obj.spec) == "table" and obj.spec or {})
    elseif d.r.res == "endpointslices" then
      why = check_slice(pod, obj, services)
    else
      why = check_route(pod, type(obj.spec) == "table" and obj.spec or {}, services)
    end
    if why then
      return string.format("child #%d: %s %s %s", i, d.r.kind, obj.metadata.name, why)
    end
  end
  return nil
end

-- Renders the stamped children of a cached pod. Returns a list of
-- { r = resource spec, key = object key, obj = child }, or nil and the
-- reason it has none (second value true when that reason is an error).
local function desired_of(pod)
  local list, why = host.render(pod)
  if list == false then return nil, why, true end
  if list == nil then return nil, why, false end
  local out, names = {}, {}
  for i = 1, #list do
    local child = list[i]
    local r, err = stamp(pod, child, i)
    if not r then return nil, err, true end
    local okey = child.metadata.namespace .. "/" .. child.metadata.name
    local id = r.res .. "\0" .. okey
    if names[id] then
      return nil, string.format("two children are %s %s", r.kind, child.metadata.name), true
    end
    names[id] = true
    out[#out + 1] = { r = r, key = okey, obj = child }
  end
  local entries = 0
  for _ in pairs(list) do entries = entries + 1 end
  if entries ~= #list then
    return nil, "children() must return a list (an array), not a map", true
  end
  local refused = check_invariants(pod, out)
  if refused then return nil, refused, true end
  return out
end


local function shallow(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- The body of an apply: the desired object with metadata.resourceVersion
-- or metadata.uid as a precondition (neither is a field anyone owns).
local function with_meta(obj, field, value)
  local o = shallow(obj)
  o.metadata = shallow(obj.metadata)
  o.metadata[field] = value
  return o
end

local function action(verb, r, okey, obj, uid)
  local ns, name = okey:match("^([^/]*)/(.*)$")
  local a = { verb = verb, res = r.res, key = okey, kind = r.kind, name = name }
  if verb == "get" then
    a.method = "GET"
    a.path = host.path(r.apiVersion, r.kind, ns, name)
    a.body = ""
  elseif verb == "unfinalize" then
    -- A JSON patch that removes one finalizer and touches nothing else;
    -- the test makes it fail (422) if the list moved since we saw it.
    a.method = "PATCH"
    a.path = host.path("v1", "Pod", ns, name)
    local at = "/metadata/finalizers/" .. string.format("%d", obj)
    a.body = encode({ { op = "test", path = at, value = GO_FINALIZER },
                      { op = "remove", path = at } })
    a.content_type = "application/json-patch+json"
  elseif verb == "upgrade" then
    -- obj: the JSON patch upgrade_patch made.
    a.method = "PATCH"
    a.path = host.path(r.apiVersion, r.kind, ns, name)
    a.body = obj
    a.content_type = "application/json-patch+json"
  elseif verb == "create" or verb == "apply" then
    -- Every field of a child is written by server-side apply, from the
    -- first write on, so the one field manager owns all of it and a later
    -- apply prunes whatever is no longer desired. A create carries a
    -- resourceVersion no object has: if the name exists (someone else's
    -- object, or ours out of sight) the API server answers 409 and changes
    -- nothing. An update carries the observed uid: it never touches a
    -- newer object of the same name.
    a.method = "PATCH"
    a.path = host.path(r.apiVersion, r.kind, ns, name) .. "?fieldManager=" .. MANAGER .. "&force=true"
    if verb == "create" then
      a.body = encode(with_meta(obj, "resourceVersion", NEVER_RV))
    else
      a.body = encode(with_meta(obj, "uid", uid))
    end
    a.content_type = "application/apply-patch+yaml"
  else
    a.method = "DELETE"
    a.path = host.path(r.apiVersion, r.kind, ns, name)
    -- The uid precondition keeps a delete from hitting a newer object
    -- of the same name. An explicit Background policy takes a Service's
    -- foregroundDeletion finalizer off in the same request: what the host
    -- deletes goes at once (its routes are gone by then), without waiting
    -- for a garbage collector that may be minutes behind.
    a.body = encode({ apiVersion = "v1", kind = "DeleteOptions",
      propagationPolicy = "Background", preconditions = { uid = uid } })
    a.content_type = "application/json"
  end
  return a
end

-- The plan for one pod key:
--   { actions = {...}, problems = { {reason, message}... }, error = text|nil,
--     pod = { name, namespace, uid } | nil }
-- An error (script failure, invalid child) means: write nothing, report,
-- retry later; children stay as they are.
function M.reconcile(key)
  local pod = pod_of(key)
  local plan = { actions = {}, problems = {} }
  local desired = {}
  if pod then
    plan.pod = { name = pod.metadata.name, namespace = pod.metadata.namespace,
                 uid = pod.metadata.uid }
    if pod.go_finalizer then
      plan.actions[#plan.actions + 1] = action("unfinalize", { res = "pods", kind = "Pod" },
        key, pod.go_finalizer)
    end
    local list, why, failed = desired_of(pod)
    if failed then
      plan.error = why
      return plan
    end
    desired = list or {}
  else
    -- The pod is gone: so are its entries in the tables of names in flight.
    for id, k in pairs(wanted_by) do
      if k == key then wanted_by[id], taken[id] = nil, nil end
    end
  end
  -- held: a name is not ours, so nothing new is written; probing: we do not
  -- know yet whose it is, so nothing is deleted either.
  local wanted, writes, held, probing, conflict = {}, {}, false, false, false
  -- Until the pod's Service exists and is ours, nothing that points at a
  -- Service by name is created: an EndpointSlice or HTTPRoute next to
  -- someone else's Service of that name would feed the pod into it, even
  -- for the one round trip the Service's create takes to come back 409.
  -- (A Service being deleted is waited for too: its successor's uid is
  -- what the routes will name as their owner.)
  -- Deletion order without the operator: every Service carries the
  -- finalizer "foregroundDeletion" (the garbage collector's own, so nothing
  -- hangs when envoy-router is gone) and each HTTPRoute names each of the
  -- pod's Services as a blocking owner (blockOwnerDeletion). When the pod
  -- goes, the collector deletes the Service in the foreground: it waits
  -- until the route, its blocking dependent, is gone. Envoy Gateway answers
  -- 500 for a route whose Service is gone, 503 and then 404 otherwise. The
  -- owner needs the Service's uid, which the route waits for anyway:
  -- a new pod takes 3 writes in 2 rounds (Service; route and EndpointSlice).
  local release = pod and val(pod.metadata.deletionTimestamp) ~= nil
    and pod_label(pod, "") == pod.metadata.name
  -- service_owned: a Service still has a controller (not yet released).
  local service_pending, service_owned, service_refs = false, false, {}
  for _, d in ipairs(desired) do
    if d.r.kind == "Service" then
      local obs = store[d.r.res][d.key]
      local c = obs and unpack_child(obs)
      if c and c.controlled then service_owned = true end
      if not c or c.deleting then
        service_pending = true
      elseif c.uid then
        service_refs[#service_refs + 1] = {
          apiVersion = "v1", kind = "Service", name = d.obj.metadata.name,
          uid = c.uid, controller = false, blockOwnerDeletion = true,
        }
      end
    end
  end
  if not release then
    for _, d in ipairs(desired) do
      if d.r.kind == "HTTPRoute" then
        local refs = d.obj.metadata.ownerReferences
        for _, ref in ipairs(service_refs) do refs[#refs + 1] = ref end
      end
    end
  end
  -- Draining: once the pod is terminating, its Service and EndpointSlice
  -- lose every ownerReference and its routes their Service owners (their
  -- next apply carries none, and server-side apply prunes what it no
  -- longer sends), so that when the pod
  -- goes the garbage collector deletes only its routes; the host deletes the
  -- rest a drain delay after the routes are gone (below). Envoy Gateway's
  -- informers are not ordered across kinds: a Service gone a few ms after
  -- its route can still be translated as "route present, Service gone",
  -- which answers 500. Only when the envoy-router/pod label names the pod
  -- (names up to 63 characters), as owner_key then finds it by that label.
  -- In that order: a route drops its Service owner only once every one of
  -- the pod's Services is seen released and not being deleted. A pod
  -- deleted by force is terminating for a few ms: the collector may have
  -- started deleting the Service in the foreground (waiting for the route,
  -- its blocking dependent) before our applies land, and a route that
  -- dropped its Service owner then would let the Service go first. A
  -- released Service has no owner left, so the collector never starts on it.
  local routes_wait = service_pending or (release and service_owned)
  if release then
    for _, d in ipairs(desired) do
      if d.r.kind ~= "HTTPRoute" then d.obj.metadata.ownerReferences = nil end
    end
  end
  for _, d in ipairs(desired) do
    local id = d.r.res .. "\0" .. d.key
    wanted[id] = true
    local obs = store[d.r.res][d.key]
    local c = obs and unpack_child(obs)
    if c and c.cluster_ip and type(d.obj.spec) == "table" and d.obj.spec.clusterIP == "None" then
      -- A Service that has a cluster IP (one the Go operator made, or from
      -- before --headless-services) cannot become headless: the API server
      -- refuses the change. Envoy routes to the endpoints either way, so
      -- it keeps its IP rather than being deleted under live traffic.
      d.obj.spec.clusterIP = nil
    end
    local md = d.obj.metadata
    local h = hash(d.obj)
    if md.annotations == nil then md.annotations = {} end
    if type(md.annotations) == "table" then md.annotations[HASH] = h end
    if obs == nil then
      if taken[id] then
        -- A create met an object we do not see. Read it: it may be ours
        -- with our label taken off by hand (then it is adopted and
        -- repaired), someone else's (a conflict), or gone.
        held, probing = true, true
        wanted_by[id] = key
        writes[#writes + 1] = { a = action("get", d.r, d.key), probe = true }
      elseif d.r.kind == "Service" or not service_pending then
        wanted_by[id] = key
        sent[id] = hash(owned_view(d.obj))
        writes[#writes + 1] = { a = action("create", d.r, d.key, d.obj) }
      end
    elseif not (d.r.kind == "HTTPRoute" and routes_wait) then
      -- (An existing route waits, as it is, while its Service is being
      -- created again: its next apply names the new Service as owner.)
      local ns = pod.metadata.namespace
      local okey = c.ref_name and (ns .. "/" .. c.ref_name)
      -- Ours: our label, or (label taken off by hand) our controller
      -- reference to this very pod; or left by the Go operator this one
      -- replaces: our label, exactly this name, and no controller at all.
      local ours = (okey == key and (c.ours or c.ref_uid == pod.metadata.uid))
        or (c.ours and not c.controlled)
      if not ours then
        held, conflict = true, true
        plan.problems[#plan.problems + 1] = {
          reason = "NameConflict",
          message = string.format("%s %s already exists and belongs to %s; this pod gets no "
            .. "children until the name is free", d.r.kind, d.key,
            okey and ("pod " .. okey) or "someone else"),
        }
      else
        local want = hash(owned_view(d.obj))
        local where
        if c.ann ~= h then
          -- Written from other flags or templates (or not by us yet): the
          -- apply also prunes what is no longer desired.
          where = "metadata.annotations." .. HASH
        elseif c.owned ~= want and settled[id] ~= h .. " " .. c.owned then
          -- Drift: a field our apply owns was changed or taken over by
          -- someone else (or the server keeps it in another form: then
          -- the answer to our apply settles it).
          where = "fields envoy-router owns"
        end
        if not where then replace[id] = nil end
        if c.deleting and c.foreground_only then
          -- The garbage collector started deleting it in the foreground
          -- (an earlier pod of this name went without draining) and may be
          -- minutes behind: finish it now; the answer queues the pod, which
          -- creates it afresh.
          replace[id] = true
          writes[#writes + 1] = { a = action("delete", d.r, d.key, nil, c.uid), replace = true }
        elseif upgrade[id] and not c.deleting then
          -- First hand the fields an older version wrote by POST to the
          -- Apply entry; the answer queues the pod for the apply.
          writes[#writes + 1] = { a = action("upgrade", d.r, d.key, upgrade[id]) }
        elseif where and replace[id] then
          writes[#writes + 1] = { a = action("delete", d.r, d.key, nil, c.uid), replace = true }
        elseif where then
          local a = action("apply", d.r, d.key, d.obj, c.uid)
          a.why = where
          sent[id] = want
          repairing[id] = c.ann == h or nil
          if release and d.r.kind == "Service" and c.controlled then releasing[id] = key end
          writes[#writes + 1] = { a = a }
        end
      end
    end
  end
  for _, w in ipairs(writes) do
    if w.probe or not held then plan.actions[#plan.actions + 1] = w.a end
  end
  -- A known conflict: what the pod has must go (it would feed someone
  -- else's Service). While only probing, keep it as it is.
  if conflict then wanted = {} end
  if probing and not conflict then
    for id in pairs(owned_by(key)) do wanted[id] = true end
  end
  -- What this pod owns and no longer wants goes; sorted for stable plans.
  -- Routes first: the rest waits until they are gone (a route whose
  -- Service is gone answers 500); their removal from the cache queues the
  -- pod again. An object already being deleted (finalizers) is waited for.
  local ids, routes_going = {}, false
  for id in pairs(owned_by(key)) do
    if not wanted[id] then
      ids[#ids + 1] = id
      if id:match("^httproutes%z") then routes_going = true end
    end
  end
  table.sort(ids)
  -- The rest goes a drain delay (host.drain_ms()) after this pod key was
  -- first seen with its routes gone and the rest to delete (for a restarted
  -- host: after its first look), so Envoy Gateway has dropped the route
  -- before it sees the Service go. The key is queued again for then.
  local rest, now = false, host.now_ms()
  for _, id in ipairs(ids) do
    if not routes_going and not id:match("^httproutes%z") then rest = true end
  end
  if not rest then
    drain_since[key] = nil
  else
    drain_since[key] = drain_since[key] or now
    local left = drain_since[key] + host.drain_ms() - now
    if left > 0 then
      plan.requeue_ms = left
      rest = false
    end
  end
  for _, id in ipairs(ids) do
    local res, okey = id:match("^([^%z]*)%z(.*)$")
    local c = unpack_child(store[res][okey])
    if (res == "httproutes" or rest) and (not c.deleting or c.foreground_only) then
      plan.actions[#plan.actions + 1] = action("delete", RESOURCES[res], okey, nil, c.uid)
    end
  end
  -- A route of this pod that its Gateway controller turned down: reported
  -- once per change (host/reconcile.c does not retry the pod for it).
  if pod and notices[key] then
    local rkeys = {}
    for rkey in pairs(notices[key]) do rkeys[#rkeys + 1] = rkey end
    table.sort(rkeys)
    for _, rkey in ipairs(rkeys) do
      local n = notices[key][rkey]
      plan.problems[#plan.problems + 1] = { reason = n.reason, message = n.message, notice = true }
    end
  end
  notices[key] = nil
  return plan
end

-- The API server's answer to one action. Returns "ok", "retry" (try the
-- pod again after a backoff), "conflict" (someone else's object holds the
-- name) or "rejected" (the server refused the object: 4xx).
function M.result(res, key, verb, status, body)
  local id = res .. "\0" .. key
  if verb == "unfinalize" then
    -- Gone is fine; a failed test (the list moved) is tried again once
    -- the watch has brought the pod as it is now.
    if (status >= 200 and status < 300) or status == 404 then return "ok" end
    if status == 403 then return "rejected" end
    return "retry"
  end
  if verb == "upgrade" then
    if status >= 200 and status < 300 then
      local ok, o = pcall(cjson.decode, body)
      if ok and type(o) == "table" and type(o.metadata) == "table" then
        upsert(res, o, true)
        local pkey = owner_key(o)
        if pkey then host.enqueue(pkey) end
      end
      return "ok"
    end
    -- Changed since we saw it (the test failed): the watch brings the
    -- object as it is, and a patch made from that.
    if status == 404 or status == 409 or status == 422 then return "retry" end
    if status == 400 or status == 403 then return "rejected" end
    return "retry"
  end
  if verb == "get" then
    if status == 404 then
      -- The name is free again: the pod can create it.
      taken[id] = nil
      if wanted_by[id] then host.enqueue(wanted_by[id]) end
      return "ok"
    end
    if status ~= 200 then return "retry" end
    local o = cjson.decode(body)
    local pkey, ref = owner_key(o)
    local pod = pkey and pod_of(pkey)
    if pod and ref.uid == pod.metadata.uid then
      taken[id], wanted_by[id] = nil, nil
      -- Outside our label selector, so the watch will not tell us about it
      -- until the repair puts the label back.
      upsert(res, o, false)
      return "ok"
    end
    return "conflict"
  end
  if status >= 200 and status < 300 then
    if verb == "delete" then
      -- Gone, unless finalizers keep it (the answer is then the object,
      -- marked for deletion: its watch DELETED tells when it is gone). A
      -- route gone queues its pod: the rest of the pod's children follow;
      -- so does a replacement (the pod creates the child afresh).
      local pkey = owner_of[res][key]
      local again = replace[id]
      local ok, o = pcall(cjson.decode, body)
      local md = ok and type(o) == "table" and o.kind ~= "Status" and val(o.metadata)
      local fin = type(md) == "table" and val(md.finalizers)
      -- (Our Background policy took foregroundDeletion off: with no other
      -- finalizer the object is gone, though the answer still shows it.)
      local held = type(fin) == "table" and #fin > 0
        and not (#fin == 1 and fin[1] == FOREGROUND)
      if held and val(md.deletionTimestamp) then
        upsert(res, o, true)
      else
        remove(res, key, res ~= "httproutes")
        if again and pkey then host.enqueue(pkey) end
      end
    else
      local ok, o = pcall(cjson.decode, body)
      if ok and type(o) == "table" and type(o.metadata) == "table" then
        local ann = val(o.metadata.annotations)
        local got = owned_hash(o)
        settled[id] = nil
        if type(sent[id]) == "string" and got ~= sent[id] and type(ann) == "table" then
          settled[id] = tostring(ann[HASH]) .. " " .. got
        end
        local rv, seen = val(o.metadata.resourceVersion), seen_in_flight[id] or {}
        if not seen[rv] and not relisted[id] then upsert(res, o, true, got) end
        local other = relisted[id] or false
        for v in pairs(seen) do
          if v ~= rv then other = true end
        end
        -- A new Service (or a name free again): the pod's other children
        -- can follow now. A change that came while the write was in
        -- flight: the pod looks again.
        local pkey = owner_key(o) or releasing[id]
        if pkey and (taken[id] or other or releasing[id]
            or (verb == "create" and res == "services")) then
          host.enqueue(pkey)
        end
      end
      taken[id], wanted_by[id], sent[id], repairing[id] = nil, nil, nil, nil
      releasing[id] = nil
      seen_in_flight[id], relisted[id] = nil, nil
    end
    return "ok"
  end
  sent[id], seen_in_flight[id], relisted[id], releasing[id] = nil, nil, nil, nil
  local was_repair = repairing[id]
  repairing[id] = nil
  if verb == "apply" and status == 422 then
    -- metadata.uid refused: a newer object holds the name (our cache is
    -- behind); the watch brings it. A repair refused: entries someone
    -- else added block it; the child is replaced.
    if body:find("metadata.uid", 1, true) then return "retry" end
    if was_repair then
      replace[id] = true
      return "retry"
    end
    return "rejected"
  end
  if verb == "apply" and status == 409 then
    -- The uid precondition: the object we saw is gone or replaced. The
    -- watch brings the news; look again then.
    return "retry"
  end
  if verb == "delete" and status == 404 then
    -- Gone already (the garbage collector, or a hand, was first): as for
    -- a 200. A replacement still queues the pod; the watch's DELETED will
    -- find nothing left to tell it.
    local pkey, again = owner_of[res][key], replace[id]
    remove(res, key, res ~= "httproutes")
    if again and pkey then host.enqueue(pkey) end
    return "ok"
  end
  if verb == "create" and status == 409 then
    -- Someone's object, or ours out of sight of the watch: the next plan
    -- reads it to tell.
    taken[id] = true
    return "retry"
  end
  if status == 400 or status == 403 or status == 404 or status == 422 then return "rejected" end
  return "retry"
end

-- Validation of candidate scripts (installed as host.render's sandbox by
-- the caller around each call), in slices so the main loop serves watches
-- and health between them: validate_begin takes the sorted pod keys;
-- validate_next renders the next cached one and returns "more", "done",
-- or "failed" and the error. Pods gone meanwhile are skipped; pods added
-- meanwhile are rendered after the swap, as every pod is.
local validating

function M.validate_begin()
  local keys = {}
  for key in pairs(pods) do keys[#keys + 1] = key end
  table.sort(keys)
  validating = { keys = keys, i = 1 }
  return #keys
end

function M.validate_next()
  local v = validating
  while v and v.i <= #v.keys do
    local key = v.keys[v.i]
    v.i = v.i + 1
    local pod = pod_of(key)
    if pod then
      local _, why, failed = desired_of(pod)
      if failed then
        validating = nil
        return "failed", string.format("pod %s: %s", key, why)
      end
      if v.i <= #v.keys then return "more" end
    end
  end
  validating = nil
  return "done"
end

-- All of it in one go (tests, and callers without a loop). Returns nil, or
-- the first error.
function M.validate()
  M.validate_begin()
  while true do
    local state, why = M.validate_next()
    if state == "done" then return nil end
    if state == "failed" then return why end
  end
end

-- The children a pod (decoded JSON) would get, as the operator writes
-- them, for `envoy-router render`. Returns a JSON array, or nil and why.
function M.render(pod_json)
  local pod = project_pod(cjson.decode(pod_json))
  if not pod.metadata.name or not pod.metadata.namespace then
    return nil, "the pod needs metadata.name and metadata.namespace"
  end
  local list, why = desired_of(pod)
  if not list then return nil, why end
  local out = {}
  for i, d in ipairs(list) do out[i] = d.obj end
  if #out == 0 then return "[]" end
  return encode(out)
end

-- Renders each fixture pod (raw pod tables) with the current scripts, for
-- `envoy-router check`. Returns how many rendered, or nil and the first
-- failure.
function M.check(fixtures)
  for i, raw in ipairs(fixtures) do
    local pod = project_pod(raw)
    local _, why, failed = desired_of(pod)
    if failed then
      return nil, string.format("fixture pod #%d (%s): %s", i, tostring(pod.metadata.name), why)
    end
  end
  return #fixtures
end

-- Queues every known pod key: cached pods and owners of cached children.
function M.enqueue_all()
  local n = 0
  for key in pairs(pods) do host.enqueue(key); n = n + 1 end
  for key in pairs(owned) do
    if not pods[key] then host.enqueue(key); n = n + 1 end
  end
  return n
end

-- The writes in flight were cancelled: no answer will come for them.
function M.writes_cancelled()
  sent, seen_in_flight, repairing, relisted, releasing = {}, {}, {}, {}, {}
end

-- How long a route may go without an answer before its pod hears of it.
-- Envoy Gateway writes no status at all on a route whose Gateway does not
-- exist (it only reads routes of the Gateways it serves), so silence is
-- the only sign of a misspelt Gateway name or of no running controller.
M.PENDING_REPORT_MS = 30000

-- Cached HTTPRoutes by what their Gateway controller says: accepted, not
-- accepted, accepted with unresolved backends, no answer yet. Called
-- every second with the monotonic clock: a route first counted pending
-- at now_ms is reported (once per wait) PENDING_REPORT_MS later.
function M.route_states(now_ms)
  local n = { accepted = 0, not_accepted = 0, unresolved = 0, pending = 0 }
  for rkey, h in pairs(route_health) do
    n[h.state] = n[h.state] + 1
    if h.state == "pending" then
      if h.since == nil then
        h = pending_entry(h.gateways, now_ms)
        route_health[rkey] = h
      end
      local pkey = owner_of.httproutes[rkey]
      if not h.told and pkey and now_ms - h.since >= M.PENDING_REPORT_MS then
        h = pending_entry(h.gateways, h.since, true)
        route_health[rkey] = h
        notices[pkey] = notices[pkey] or {}
        notices[pkey][rkey] = {
          reason = "RouteNotAnswered",
          message = string.format("HTTPRoute %s has had no answer from a Gateway controller "
            .. "for %d s: check that Gateway %s exists and that a controller serves its "
            .. "GatewayClass", rkey, M.PENDING_REPORT_MS // 1000, h.gateways),
        }
        host.enqueue(pkey)
      end
    end
  end
  return n.accepted, n.not_accepted, n.unresolved, n.pending
end

-- Figures derived from the caches (true after a restart, unlike counters).
-- Counted as the caches change (see `count`): a walk over every pod once a
-- second would cost milliseconds at ten thousand pods.
function M.stats()
  return count.managed, count.pods, count.children
end

-- The coordination.k8s.io/v1 Lease of leader election (host/leader.c
-- keeps the election; the Lease's JSON is read and written here, as every
-- other object is). The spec fields election uses: holderIdentity,
-- leaseDurationSeconds, acquireTime, renewTime, leaseTransitions.
local LEASE_API, LEASE_KIND = "coordination.k8s.io/v1", "Lease"

-- A decoded Lease, or nil and why (not JSON, not an object with metadata).
local function lease_decode(text)
  local ok, o = pcall(cjson.decode, text)
  if not ok then return nil, "the Lease is not JSON: " .. tostring(o) end
  if type(o) ~= "table" or type(o.metadata) ~= "table" then
    return nil, "not a Lease object"
  end
  return o
end

-- A count election can use: a whole number in [0, 1e9], else 0.
local function lease_count(v)
  local n = math.tointeger(v)
  if n and n >= 0 and n <= 1000000000 then return n end
  return 0
end

-- The election fields of a Lease given as JSON text: holder, duration,
-- acquireTime, renewTime, transitions (absent ones "" or 0); or nil and
-- why.
function M.lease_parse(text)
  local o, why = lease_decode(text)
  if not o then return nil, why end
  local spec = type(o.spec) == "table" and o.spec or {}
  local function str(v) return type(v) == "string" and v or "" end
  return str(spec.holderIdentity), lease_count(spec.leaseDurationSeconds),
    str(spec.acquireTime), str(spec.renewTime), lease_count(spec.leaseTransitions)
end

-- The Lease carrying the given election fields, as JSON text. Built on
-- `base` (the Lease last read, JSON text), so its resourceVersion makes
-- the PUT conditional and the fields election does not own (labels,
-- annotations, ownerReferences) go back unchanged; managedFields are left
-- out (unset, the server keeps its own). Without a base, a new Lease
-- namespace/name (for the POST). Or nil and why.
function M.lease_body(base, namespace, name, holder, seconds, acquire, renew, transitions)
  local o
  if base then
    local why
    o, why = lease_decode(base)
    if not o then return nil, why end
    o.metadata.managedFields = nil
  else
    o = { apiVersion = LEASE_API, kind = LEASE_KIND,
          metadata = { name = name, namespace = namespace } }
  end
  if type(o.spec) ~= "table" then o.spec = {} end
  o.spec.holderIdentity = holder
  o.spec.leaseDurationSeconds = seconds
  o.spec.acquireTime = acquire
  o.spec.renewTime = renew
  o.spec.leaseTransitions = transitions
  return encode(o)
end

return M
