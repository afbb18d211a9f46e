-- templates.service: the pod's Service (v1).
--
--   service(pod, cfg, names) -> object
--
-- cfg is a normalized config (lib.config) and names comes from
-- lib.names.for_pod. The Service has no selector: its only endpoint is the
-- EndpointSlice the host keeps beside it. With cfg.headless (the default) it
-- takes no cluster IP, so kube-proxy programs nothing for it; Envoy Gateway
-- sends traffic straight to the endpoint either way.

local pod = require("lib.pod")

return function(p, cfg, names)
  local spec = {
    ports = {
      {
        name = names.port,
        protocol = "TCP",
        port = cfg.servicePort,
        targetPort = cfg.podPort,
      },
    },
  }
  if cfg.headless then
    spec.clusterIP = "None"
  end
  return {
    apiVersion = "v1",
    kind = "Service",
    metadata = {
      name = names.service,
      namespace = pod.namespace(p),
    },
    spec = spec,
  }
end
