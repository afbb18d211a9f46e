-- templates.httproute: the HTTPRoute (gateway.networking.k8s.io/v1) that
-- sends /<pod-name> on the Gateway to the pod's Service.
--
--   httproute(pod, cfg, names) -> object
--
-- cfg is a normalized config (lib.config) and names comes from
-- lib.names.for_pod. The parent Gateway is cfg.gatewayName, in
-- cfg.gatewayNamespace when set, else in the route's own namespace.
-- PathPrefix matches whole path segments, so /pod-1 never catches /pod-10.
-- With cfg.rewritePrefix the pod sees "/" where the client asked for
-- "/<pod-name>". Hostnames are set only when cfg.hostnames is non-empty.

local pod = require("lib.pod")

return function(p, cfg, names)
  local rule = {
    matches = {
      { path = { type = "PathPrefix", value = names.path } },
    },
    backendRefs = {
      {
        group = "",
        kind = "Service",
        name = names.service,
        port = cfg.servicePort,
        -- The API server's default, written out: what the operator applies
        -- is then exactly what the server keeps, and a restart finds every
        -- route up to date without a write.
        weight = 1,
      },
    },
  }
  if cfg.rewritePrefix then
    rule.filters = {
      {
        type = "URLRewrite",
        urlRewrite = {
          path = { type = "ReplacePrefixMatch", replacePrefixMatch = "/" },
        },
      },
    }
  end
  local spec = {
    parentRefs = {
      {
        group = "gateway.networking.k8s.io",
        kind = "Gateway",
        name = cfg.gatewayName,
        namespace = cfg.gatewayNamespace,
      },
    },
    rules = { rule },
  }
  if #cfg.hostnames > 0 then
    local hostnames = {}
    for i, h in ipairs(cfg.hostnames) do
      hostnames[i] = h
    end
    spec.hostnames = hostnames
  end
  return {
    apiVersion = "gateway.networking.k8s.io/v1",
    kind = "HTTPRoute",
    metadata = {
      name = names.httproute,
      namespace = pod.namespace(p),
    },
    spec = spec,
  }
end
