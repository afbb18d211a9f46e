-- host/core.lua: the host's own bookkeeping, trusted and compiled in.
--
-- It decodes what the API server sends, keeps the caches (a projection of
-- each selected pod; each child as observed, without managedFields and
-- status), and turns one pod key into a plan: the writes that make the
-- pod's children equal to what the user's scripts want. It never writes:
-- host/reconcile.c carries the plan out and reports each result back.
--
-- Loaded by host/core.c with (host, cjson); host provides:
--   host.enqueue(key)           queue a pod key ("namespace/name")
--   host.render(pod)            run the user's router.children(pod, config):
--                               list | nil, reason | false, error
--   host.contains(obs, des)     observed already contains desired
--   host.valid(rule, s)         name rules: "dns1035", "subdomain",
--                               "label_key", "label_value"
--   host.path(apiVersion, kind, namespace, name)  API path of an object

local host, cjson = ...

local M = {}

local MANAGER = "envoy-router"
local MANAGED_BY = "app.kubernetes.io/managed-by"
local POD_LABEL = "envoy-router/pod"
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

local pods = {}        -- pod key -> projected pod
local store = {}       -- res -> object key -> observed child
local owner_of = {}    -- res -> object key -> owning pod key
local owned = {}       -- pod key -> { ["res\0objkey"] = true }
local seen = {}        -- res -> object key -> list generation that saw it
-- "res\0objkey" -> true: a create of that name met an object that is not
-- ours (409). Until a create of it succeeds, its pod gets no children at
-- all: an EndpointSlice or HTTPRoute beside someone else's Service would
-- feed the pod into that Service.
local taken = {}
-- "res\0objkey" -> true: server-side apply was refused (422), e.g. a hand
-- edit left a Service port entry that another field manager owns, which
-- apply cannot remove. The next write of that child is a full update.
local replace_next = {}
-- "res\0objkey" -> pod key, for the creates and probes in flight: the
-- answer to a probe has to queue the pod, whose key may differ from the
-- child's (hashed names).
local wanted_by = {}
-- object key -> { state, reason, message } of each cached HTTPRoute, read
-- from the conditions its Gateway controller writes (the only part of a
-- route's status the host keeps).
local route_health = {}
-- pod key -> { [route key] = problem }: a route of that pod turned not
-- accepted (or unresolved) and the pod's next plan reports it, once.
local notices = {}
local generation = {}  -- res -> current list generation
for res in pairs(RESOURCES) do
  store[res], owner_of[res], seen[res] = {}, {}, {}
end
seen.pods = {}
for res in pairs(seen) do generation[res] = 0 end

local function val(v)
  if v == null then return nil end
  return v
end

local function key_of(md)
  return (val(md.namespace) or "") .. "/" .. (val(md.name) or "")
end

-- The few pod fields scripts and reconcile read; a whole pod is ~16 KiB
-- as a table, this is well under 1 KiB.
local function project_pod(o)
  local md, spec, st = o.metadata or {}, val(o.spec) or {}, val(o.status) or {}
  local ann = val(md.annotations)
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
  return {
    apiVersion = "v1",
    kind = "Pod",
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

-- A child as the comparison needs it: everything but status and the
-- bookkeeping metadata.
local function project_child(o)
  local md = o.metadata or {}
  md.managedFields = nil
  md.creationTimestamp = nil
  md.selfLink = nil
  md.generation = nil
  o.status = nil
  return o
end

-- What the Gateway controller says about a route (before project_child drops
-- the status): for each of the route's own parentRefs, the status entry of
-- that parent and its Accepted and ResolvedRefs conditions, ignoring ones
-- written for an older generation of the spec. Returns
-- { state = "accepted" | "not_accepted" | "unresolved" | "pending",
--   reason, message } (reason and message for the two bad states).
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
  return unresolved or { state = "accepted" }
end

-- The pod key a child belongs to: its controller ownerReference to a Pod.
local function owner_key(o)
  local md = o.metadata or {}
  for _, ref in ipairs(val(md.ownerReferences) or {}) do
    if ref.kind == "Pod" and ref.controller == true then
      return (val(md.namespace) or "") .. "/" .. ref.name, ref
    end
  end
  return nil
end

local function link(res, okey, pkey)
  local old = owner_of[res][okey]
  if old == pkey then return end
  local id = res .. "\0" .. okey
  if old and owned[old] then
    owned[old][id] = nil
    if next(owned[old]) == nil then owned[old] = nil end
  end
  owner_of[res][okey] = pkey
  if pkey then
    owned[pkey] = owned[pkey] or {}
    owned[pkey][id] = true
  end
end

-- Records an object; queues the pod keys it concerns unless quiet.
local function upsert(res, o, quiet)
  local md = o.metadata or {}
  local key = key_of(md)
  if res == "pods" then
    pods[key] = project_pod(o)
    seen.pods[key] = generation.pods
    if not quiet then host.enqueue(key) end
    return
  end
  local old = owner_of[res][key]
  local pkey = owner_key(o)
  if res == "httproutes" then
    local h, was = health_of(o), route_health[key]
    if h.state == "pending" and was and was.state == "pending" then
      h.since, h.told = was.since, was.told   -- still waiting since then
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
  store[res][key] = project_child(o)
  seen[res][key] = generation[res]
  link(res, key, pkey)
  if not quiet then
    if pkey then host.enqueue(pkey) end
    if old and old ~= pkey then host.enqueue(old) end
  end
end

local function remove(res, key, quiet)
  if res == "pods" then
    if pods[key] then
      pods[key] = nil
      seen.pods[key] = nil
      if not quiet then host.enqueue(key) end
    end
    return
  end
  if store[res][key] == nil then return end
  local pkey = owner_of[res][key]
  store[res][key] = nil
  seen[res][key] = nil
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
  generation[res] = (generation[res] or 0) + 1
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
  local gen = generation[res]
  local gone = {}
  for key in pairs(res == "pods" and pods or store[res]) do
    if seen[res][key] ~= gen then gone[#gone + 1] = key end
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
  return r
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
  return out
end

local function action(verb, r, okey, obj, uid)
  local ns, name = okey:match("^([^/]*)/(.*)$")
  local a = { verb = verb, res = r.res, key = okey, kind = r.kind, name = name }
  if verb == "get" then
    a.method = "GET"
    a.path = host.path(r.apiVersion, r.kind, ns, name)
    a.body = ""
  elseif verb == "create" then
    a.method = "POST"
    a.path = host.path(r.apiVersion, r.kind, ns, nil) .. "?fieldManager=" .. MANAGER
    a.body = encode(obj)
    a.content_type = "application/json"
  elseif verb == "replace" then
    a.method = "PUT"
    a.path = host.path(r.apiVersion, r.kind, ns, name) .. "?fieldManager=" .. MANAGER
    a.body = encode(obj)
    a.content_type = "application/json"
  elseif verb == "apply" then
    a.method = "PATCH"
    a.path = host.path(r.apiVersion, r.kind, ns, name) .. "?fieldManager=" .. MANAGER .. "&force=true"
    a.body = encode(obj)
    a.content_type = "application/apply-patch+yaml"
  else
    a.method = "DELETE"
    a.path = host.path(r.apiVersion, r.kind, ns, name)
    -- The uid precondition keeps a delete from hitting a newer object
    -- of the same name.
    a.body = encode({ apiVersion = "v1", kind = "DeleteOptions",
      preconditions = { uid = uid } })
    a.content_type = "application/json"
  end
  return a
end

-- A copy of the observed object with the desired one laid over it: maps
-- merge, lists and scalars of the desired object replace the observed ones.
-- Keeps resourceVersion, so a full update loses no concurrent change.
local function overlay(obs, des)
  if type(des) ~= "table" or type(obs) ~= "table" or #des > 0 or next(des) == nil then
    if type(des) ~= "table" then return des end
    local copy = {}
    for k, v in pairs(des) do copy[k] = overlay(nil, v) end
    return copy
  end
  local out = {}
  for k, v in pairs(obs) do out[k] = v end
  for k, v in pairs(des) do out[k] = overlay(obs[k], v) end
  return out
end

local function is_ours(obs)
  local labels = val(obs.metadata.labels)
  return labels ~= nil and labels[MANAGED_BY] == MANAGER
end

-- The plan for one pod key:
--   { actions = {...}, problems = { {reason, message}... }, error = text|nil,
--     pod = { name, namespace, uid } | nil }
-- An error (script failure, invalid child) means: write nothing, report,
-- retry later; children stay as they are.
function M.reconcile(key)
  local pod = pods[key]
  local plan = { actions = {}, problems = {} }
  local desired = {}
  if pod then
    plan.pod = { name = pod.metadata.name, namespace = pod.metadata.namespace,
                 uid = pod.metadata.uid }
    local list, why, failed = desired_of(pod)
    if failed then
      plan.error = why
      return plan
    end
    desired = list or {}
  end
  -- held: a name is not ours, so nothing new is written; probing: we do not
  -- know yet whose it is, so nothing is deleted either.
  local wanted, writes, held, probing, conflict = {}, {}, false, false, false
  -- Until the pod's Service exists and is ours, nothing that points at a
  -- Service by name is created: an EndpointSlice or HTTPRoute next to
  -- someone else's Service of that name would feed the pod into it, even
  -- for the one round trip the Service's create takes to come back 409.
  local service_pending = false
  for _, d in ipairs(desired) do
    if d.r.kind == "Service" and store[d.r.res][d.key] == nil then service_pending = true end
  end
  -- The pod's other children also name each of its HTTPRoutes as an owner
  -- (not the controller). The garbage collector deletes an object only once
  -- all its owners are gone, so when the pod goes it removes the route
  -- first and the Service and EndpointSlice after it: Envoy Gateway answers
  -- 500 for a route whose Service is gone, 503 and then 404 otherwise. The
  -- owner needs the route's uid, so a new pod's EndpointSlice waits for its
  -- route (created once the Service is ours) and the Service is updated once.
  local route_refs, route_pending = {}, false
  for _, d in ipairs(desired) do
    if d.r.kind == "HTTPRoute" then
      local obs = store[d.r.res][d.key]
      local uid = obs and val(obs.metadata.uid)
      if uid and owner_key(obs) == key and val(obs.metadata.deletionTimestamp) == nil then
        route_refs[#route_refs + 1] = {
          apiVersion = d.r.apiVersion, kind = "HTTPRoute", name = val(obs.metadata.name),
          uid = uid, controller = false, blockOwnerDeletion = false,
        }
      else
        route_pending = true
      end
    end
  end
  for _, d in ipairs(desired) do
    if d.r.kind ~= "HTTPRoute" then
      for _, ref in ipairs(route_refs) do
        local refs = d.obj.metadata.ownerReferences
        refs[#refs + 1] = ref
      end
    end
  end
  for _, d in ipairs(desired) do
    local id = d.r.res .. "\0" .. d.key
    wanted[id] = true
    local obs = store[d.r.res][d.key]
    if obs == nil then
      if taken[id] then
        -- A create met an object we do not see. Read it: it may be ours
        -- with our label taken off by hand (then it is adopted and
        -- repaired), someone else's (a conflict), or gone.
        held, probing = true, true
        wanted_by[id] = key
        writes[#writes + 1] = { a = action("get", d.r, d.key), probe = true }
      elseif d.r.kind == "Service" or (not service_pending
          and (d.r.kind == "HTTPRoute" or not route_pending)) then
        wanted_by[id] = key
        writes[#writes + 1] = { a = action("create", d.r, d.key, d.obj) }
      end
    else
      local okey, ref = owner_key(obs)
      -- Ours: our label, or (label taken off by hand) our controller
      -- reference to this very pod.
      local ours = okey == key and (is_ours(obs) or ref.uid == pod.metadata.uid)
      if not ours then
        held, conflict = true, true
        plan.problems[#plan.problems + 1] = {
          reason = "NameConflict",
          message = string.format("%s %s already exists and belongs to %s; this pod gets no "
            .. "children until the name is free", d.r.kind, d.key,
            okey and ("pod " .. okey) or "someone else"),
        }
      else
        local same, where = host.contains(obs, d.obj)
        if ref.uid ~= pod.metadata.uid then
          same, where = false, "ownerReferences (the pod was recreated)"
        end
        if not same then
          local a
          if replace_next[id] then
            a = action("replace", d.r, d.key, overlay(obs, d.obj))
          else
            a = action("apply", d.r, d.key, d.obj)
          end
          a.why = where
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
    for id in pairs(owned[key] or {}) do wanted[id] = true end
  end
  -- What this pod owns and no longer wants goes; sorted for stable plans.
  -- Routes first: the rest waits until they are gone (a route whose
  -- Service is gone answers 500); their removal from the cache queues the
  -- pod again. An object already being deleted (finalizers) is waited for.
  local ids, routes_going = {}, false
  for id in pairs(owned[key] or {}) do
    if not wanted[id] then
      ids[#ids + 1] = id
      if id:match("^httproutes%z") then routes_going = true end
    end
  end
  table.sort(ids)
  for _, id in ipairs(ids) do
    local res, okey = id:match("^([^%z]*)%z(.*)$")
    local obs = store[res][okey]
    if (res == "httproutes" or not routes_going) and val(obs.metadata.deletionTimestamp) == nil then
      plan.actions[#plan.actions + 1] = action("delete", RESOURCES[res], okey, nil,
        val(obs.metadata.uid))
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
    local pod = pkey and pods[pkey]
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
      -- route gone queues its pod: the rest of the pod's children follow.
      local ok, o = pcall(cjson.decode, body)
      local md = ok and type(o) == "table" and o.kind ~= "Status" and val(o.metadata)
      local fin = type(md) == "table" and val(md.finalizers)
      if type(fin) == "table" and #fin > 0 and val(md.deletionTimestamp) then
        upsert(res, o, true)
      else
        remove(res, key, res ~= "httproutes")
      end
    else
      replace_next[id] = nil
      local ok, o = pcall(cjson.decode, body)
      if ok and type(o) == "table" and type(o.metadata) == "table" then
        upsert(res, o, true)
        -- A new Service or HTTPRoute (or a name free again): the pod's other
        -- children can follow now.
        local pkey = owner_key(o)
        if pkey and (taken[id] or (verb == "create" and res ~= "endpointslices")) then
          host.enqueue(pkey)
        end
      end
      taken[id], wanted_by[id] = nil, nil
    end
    return "ok"
  end
  if verb == "apply" and status == 422 then replace_next[id] = true end
  if verb == "delete" and status == 404 then
    remove(res, key, res ~= "httproutes")
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

-- Tries the candidate scripts (already installed as host.render's sandbox
-- by the caller) on every cached pod. Returns nil, or the first error.
function M.validate()
  local keys = {}
  for key in pairs(pods) do keys[#keys + 1] = key end
  table.sort(keys)
  for _, key in ipairs(keys) do
    local _, why, failed = desired_of(pods[key])
    if failed then return string.format("pod %s: %s", key, why) end
  end
  return nil
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
      h.since = h.since or now_ms
      local pkey = owner_of.httproutes[rkey]
      if not h.told and pkey and now_ms - h.since >= M.PENDING_REPORT_MS then
        h.told = true
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
function M.stats()
  local managed = 0
  for key in pairs(owned) do
    if pods[key] then managed = managed + 1 end
  end
  local n = 0
  for _ in pairs(pods) do n = n + 1 end
  local children = 0
  for res in pairs(RESOURCES) do
    for _ in pairs(store[res]) do children = children + 1 end
  end
  return managed, n, children
end

return M
