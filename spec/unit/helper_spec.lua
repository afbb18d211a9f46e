local helper = require("spec.helper")

describe("spec.helper.json_problem", function()
  it("accepts objects that encode as intended", function()
    assert.is_nil(helper.json_problem({ a = { 1, 2 }, b = { c = "d" }, e = true }))
  end)

  it("finds the lua-cjson empty-table trap, with its path", function()
    assert.equal("$.spec.hostnames: empty table (lua-cjson writes {}); leave the field out",
      helper.json_problem({ spec = { hostnames = {} } }))
  end)

  it("finds sparse, mixed and unencodable values", function()
    assert.equal("$.a: keys are neither 1..n nor all strings",
      helper.json_problem({ a = { [1] = "x", [3] = "y" } }))
    assert.equal("$: keys are neither 1..n nor all strings",
      helper.json_problem({ "x", k = "y" }))
    assert.equal("$[1]: a function has no JSON form", helper.json_problem({ print }))
    assert.equal("$.n: number is not finite", helper.json_problem({ n = 0 / 0 }))
  end)
end)

describe("spec.helper.encode", function()
  it("writes sorted keys, integers without a fraction, and plain slashes", function()
    assert.equal('{\n  "a": [\n    1,\n    2.5\n  ],\n  "b": "/x\\\\/y"\n}',
      helper.encode({ b = "/x\\/y", a = { 1.0, 2.5 } }))
  end)
end)

describe("spec.helper.config", function()
  it("merges overrides into a copy of the defaults", function()
    local cfg = helper.config({ podPort = 1 })
    assert.equal(1, cfg.podPort)
    assert.equal(80, cfg.servicePort)
    cfg.hostnames[1] = "x"
    assert.same({}, helper.default_config.hostnames)
  end)
end)

describe("spec.helper.find", function()
  it("finds one object by kind and refuses none or two", function()
    local objs = { { kind = "A" }, { kind = "B" }, { kind = "B" } }
    assert.equal(objs[1], helper.find(objs, "A"))
    assert.has_error(function() helper.find(objs, "B") end, "more than one B")
    assert.has_error(function() helper.find(objs, "C") end, "no C among the objects")
  end)
end)
