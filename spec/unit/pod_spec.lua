local cjson = require("cjson")
local pod = require("lib.pod")

describe("lib.pod readers", function()
  it("walk missing fields and JSON nulls without raising", function()
    local p = cjson.decode('{"metadata":{"name":"a"},"status":null}')
    assert.is_nil(pod.get(p, "status", "podIP"))
    assert.is_nil(pod.ip(p))
    assert.is_nil(pod.ip({}))
    assert.is_nil(pod.ip(nil))
    assert.is_false(pod.is_ready({}))
    assert.is_false(pod.is_terminating({}))
    assert.is_nil(pod.node_name({ spec = cjson.null }))
    assert.is_false(pod.is_terminating(cjson.decode('{"metadata":{"deletionTimestamp":null}}')))
  end)

  it("read only non-empty strings as strings", function()
    assert.equal("n", pod.name({ metadata = { name = "n" } }))
    assert.is_nil(pod.name({ metadata = { name = "" } }))
    assert.is_nil(pod.name({ metadata = { name = 7 } }))
  end)
end)

describe("lib.pod.ip", function()
  it("prefers status.podIP", function()
    local p = { status = { podIP = "10.0.0.1", podIPs = { { ip = "10.0.0.2" } } } }
    assert.equal("10.0.0.1", pod.ip(p))
  end)

  it("falls back to the first of status.podIPs", function()
    local p = { status = { podIPs = { { ip = "10.0.0.2" }, { ip = "fd00::2" } } } }
    assert.equal("10.0.0.2", pod.ip(p))
    assert.equal("10.0.0.2", pod.ip({ status = { podIP = "", podIPs = { { ip = "10.0.0.2" } } } }))
  end)

  it("is nil when there is none", function()
    assert.is_nil(pod.ip({ status = { podIPs = {} } }))
    assert.is_nil(pod.ip({ status = { phase = "Pending" } }))
  end)
end)

describe("lib.pod.ip_family", function()
  it("tells IPv6 by its colon", function()
    assert.equal("IPv6", pod.ip_family("fd00:10:244:1::2a"))
    assert.equal("IPv6", pod.ip_family("::1"))
    assert.equal("IPv4", pod.ip_family("10.244.1.17"))
  end)
end)

describe("lib.pod.endpoint_conditions", function()
  local function with(ready_status, deletion)
    return {
      metadata = { deletionTimestamp = deletion },
      status = { conditions = { { type = "ContainersReady", status = "True" },
                                { type = "Ready", status = ready_status } } },
    }
  end

  it("is ready and serving for a ready pod", function()
    assert.same({ ready = true, serving = true, terminating = false },
      pod.endpoint_conditions(with("True")))
  end)

  it("is neither for a pod that is not ready", function()
    assert.same({ ready = false, serving = false, terminating = false },
      pod.endpoint_conditions(with("False")))
    assert.same({ ready = false, serving = false, terminating = false },
      pod.endpoint_conditions(with("Unknown")))
  end)

  it("keeps serving but is not ready while a ready pod terminates", function()
    assert.same({ ready = false, serving = true, terminating = true },
      pod.endpoint_conditions(with("True", "2025-11-26T10:00:00Z")))
  end)

  it("reads Ready alone, not ContainersReady", function()
    local p = { status = { conditions = { { type = "ContainersReady", status = "True" } } } }
    assert.is_false(pod.is_ready(p))
  end)
end)

describe("lib.pod.is_finished", function()
  it("is true for Succeeded and Failed only", function()
    assert.is_true(pod.is_finished({ status = { phase = "Succeeded" } }))
    assert.is_true(pod.is_finished({ status = { phase = "Failed" } }))
    assert.is_false(pod.is_finished({ status = { phase = "Running" } }))
    assert.is_false(pod.is_finished({}))
  end)
end)
