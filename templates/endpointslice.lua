-- templates.endpointslice: the EndpointSlice (discovery.k8s.io/v1) behind the
-- pod's Service.
--
--   endpointslice(pod, cfg, names) -> object
--
-- cfg is a normalized config (lib.config) and names comes from
-- lib.names.for_pod. One endpoint, the pod's IP; its conditions follow the
-- pod's readiness and deletion (lib.pod.endpoint_conditions). The port name
-- and protocol equal the Service port's, which is how Envoy Gateway pairs
-- them. Raises an error when the pod has no IP: lib.children filters such
-- pods out before any template runs.

local pod = require("lib.pod")

return function(p, cfg, names)
  local ip = pod.ip(p)
  if not ip then
    error("templates.endpointslice: pod has no IP", 2)
  end
  local namespace = pod.namespace(p)
  local endpoint = {
    addresses = { ip },
    conditions = pod.endpoint_conditions(p),
    targetRef = {
      kind = "Pod",
      name = pod.name(p),
      namespace = namespace,
      uid = pod.uid(p),
    },
    nodeName = pod.node_name(p),
  }
  return {
    apiVersion = "discovery.k8s.io/v1",
    kind = "EndpointSlice",
    metadata = {
      name = names.endpointslice,
      namespace = namespace,
      labels = {
        ["kubernetes.io/service-name"] = names.service,
        -- any value but the endpointslice controller's own keeps it away
        ["endpointslice.kubernetes.io/managed-by"] = "envoy-router",
      },
    },
    addressType = pod.ip_family(ip),
    ports = {
      {
        name = names.port,
        protocol = "TCP",
        port = cfg.podPort,
      },
    },
    endpoints = { endpoint },
  }
end
