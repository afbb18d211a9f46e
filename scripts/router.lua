-- router: the policy the envoy-router host runs for every selected pod.
--
-- Module contract (what the host reads):
--   router.selector                 label selector sent to the API server
--   router.children(pod, config)    -> array of Kubernetes objects
--                                   | nil, reason  (the pod gets no children)
--                                   raises on a bug
--   router.templates                the template functions children() runs,
--                                   in order (Service, EndpointSlice, HTTPRoute)
--   router.pod_annotations          optional boolean: true when children() reads
--                                   pod.metadata.annotations (only then does the
--                                   host keep and pass them; reading them
--                                   without it is an error)
--
-- pod is the projected pod (see lib/pod.lua), config the host's config table
-- (see lib/config.lua for fields and defaults; missing fields take defaults).
-- The host forces each object's namespace to the pod's, adds the labels
-- app.kubernetes.io/managed-by and envoy-router/pod and an ownerReference to
-- the pod; templates must not set ownerReferences.
--
-- A template is a function template(pod, cfg, names) -> object (or nil),
-- where cfg is the normalized config and names is lib.names.for_pod(pod):
--   { service, endpointslice, httproute = child names, port = "http",
--     path = "/<pod-name>" }
-- To change one child, write a template under a new name (it may require
-- the default, e.g. templates.service, and edit what it returns), then list
-- it here in place of the default. Output must be pure: the same pod and
-- config give the same objects. Never return an empty table for a JSON list
-- or map (it would be sent as {}): leave the field out.

local children = require("lib.children")

-- Each require is wrapped in parentheses: in Lua 5.4 require also returns
-- where it found the module, which would otherwise land in the list.
local templates = {
  (require("templates.service")),
  (require("templates.endpointslice")),
  (require("templates.httproute")),
}

return {
  selector = "envoy-router/enabled=true",
  templates = templates,
  children = function(pod, config)
    return children.build(pod, config, templates)
  end,
}
