local names = require("lib.names")

-- The DNS-1035 rule, written independently of lib.names so the two can
-- disagree: 1..63 bytes, lowercase letters, digits and '-', a letter first,
-- a letter or digit last.
local function valid(s)
  if #s < 1 or #s > 63 then
    return false
  end
  for i = 1, #s do
    local c = s:sub(i, i)
    local ok = (c >= "a" and c <= "z") or (c >= "0" and c <= "9") or c == "-"
    if not ok then
      return false
    end
  end
  local first, last = s:sub(1, 1), s:sub(-1)
  return first >= "a" and first <= "z" and last ~= "-"
end

describe("lib.names.is_dns1035", function()
  it("accepts DNS-1035 labels", function()
    for _, s in ipairs({ "a", "notebook-alice", "a1", "z-9", string.rep("a", 63) }) do
      assert.is_true(names.is_dns1035(s), s)
    end
  end)

  it("rejects everything else", function()
    local bad = {
      "", "1abc", "-abc", "abc-", "web.v2", "Notebook", "a_b", "a b",
      string.rep("a", 64), "ä", "a/b",
    }
    for _, s in ipairs(bad) do
      assert.is_false(names.is_dns1035(s), s)
    end
    assert.is_false(names.is_dns1035(nil))
    assert.is_false(names.is_dns1035(42))
  end)
end)

describe("lib.names.fnv1a64", function()
  it("matches the published FNV-1a 64-bit test vectors", function()
    assert.equal("cbf29ce484222325", names.hash_hex(""))
    assert.equal("af63dc4c8601ec8c", names.hash_hex("a"))
    assert.equal("85944171f73967e8", names.hash_hex("foobar"))
  end)

  it("is an integer and always 16 hex digits", function()
    assert.equal("integer", math.type(names.fnv1a64("notebook-alice")))
    assert.equal(16, #names.hash_hex("x"))
  end)
end)

describe("lib.names.child", function()
  it("keeps a pod name that is already a DNS-1035 label", function()
    assert.equal("notebook-alice", names.child("notebook-alice"))
    assert.equal(string.rep("b", 63), names.child(string.rep("b", 63)))
  end)

  it("turns dots into dashes and appends the hash of the full name", function()
    assert.equal("web-v2-alice-" .. names.hash_hex("web.v2.alice"), names.child("web.v2.alice"))
  end)

  it("prefixes a name that starts with a digit", function()
    assert.equal("p-2024-report-" .. names.hash_hex("2024-report"), names.child("2024-report"))
  end)

  it("lowercases and collapses runs of replaced characters", function()
    assert.equal("my-pod-" .. names.hash_hex("My__Pod"), names.child("My__Pod"))
  end)

  it("names a name with no usable character at all", function()
    assert.equal("p-" .. names.hash_hex("..."), names.child("..."))
  end)

  it("truncates long names to 63 characters", function()
    for len = 64, 253 do
      local podname = string.rep("a", len)
      local child = names.child(podname)
      assert.equal(63, #child)
      assert.equal(string.rep("a", 46) .. "-" .. names.hash_hex(podname), child)
    end
  end)

  it("does not leave a dash before the hash when truncation cuts at one", function()
    local podname = string.rep("a", 45) .. "-" .. string.rep("b", 30)
    assert.equal(string.rep("a", 45) .. "-" .. names.hash_hex(podname), names.child(podname))
  end)

  it("keeps names that sanitise alike apart", function()
    local alike = {
      { "a.b", "a_b" },
      { "web.v2", "web..v2" },
      { "1pod", "1-pod" },
      { string.rep("x", 70) .. "1", string.rep("x", 70) .. "2" },
      { string.rep("x", 63) .. ".a", string.rep("x", 63) .. ".b" },
    }
    for _, pair in ipairs(alike) do
      assert.are_not.equal(names.child(pair[1]), names.child(pair[2]))
    end
  end)

  it("raises on a missing or empty name", function()
    assert.has_error(function() names.child(nil) end)
    assert.has_error(function() names.child("") end)
  end)

  -- A small fixed generator keeps the generated names the same on every run.
  local function generator(seed)
    local state = seed
    return function(n)
      state = (state * 6364136223846793005 + 1442695040888963407) & 0x7fffffffffffffff
      return (state >> 33) % n + 1
    end
  end

  local function random_names(rand, count)
    local alphabets = {
      "abcdefghijklmnopqrstuvwxyz0123456789-.",       -- what Kubernetes allows
      "abcdefghijklmnopqrstuvwxyz0123456789-._ABCZ/ ", -- and worse
      "a.-1",                                         -- runs of separators
    }
    local out = {}
    for i = 1, count do
      local alphabet = alphabets[i % #alphabets + 1]
      local len = i % 4 == 0 and rand(253) or rand(70)
      local chars = {}
      for j = 1, len do
        local k = rand(#alphabet)
        chars[j] = alphabet:sub(k, k)
      end
      out[#out + 1] = table.concat(chars)
    end
    return out
  end

  -- Variants of one base that all sanitise to the same text: separators
  -- swapped, case changed, or a difference past the truncation point.
  local function lookalike_names(rand, bases)
    local seps = { "-", ".", "_", "..", "-.", "/", " " }
    local out = {}
    for b = 1, bases do
      local words = {}
      for w = 1, rand(4) + 1 do
        words[w] = string.rep(string.char(96 + rand(26)), rand(12)) .. tostring(b)
      end
      for v = 1, 8 do
        local parts = { v % 2 == 0 and "0" or "" }
        for w, word in ipairs(words) do
          parts[#parts + 1] = (v % 3 == 0) and word:upper() or word
          if w < #words then
            parts[#parts + 1] = seps[rand(#seps)]
          end
        end
        out[#out + 1] = table.concat(parts)
        out[#out + 1] = string.rep("q", 50) .. table.concat(parts)
      end
    end
    return out
  end

  it("gives valid, unique, stable names for thousands of generated pod names", function()
    local rand = generator(12345)
    local all = random_names(rand, 4000)
    for _, n in ipairs(lookalike_names(rand, 300)) do
      all[#all + 1] = n
    end
    local seen, owner, prefix_owner = {}, {}, {}
    local distinct, shared_prefix = 0, 0
    for _, podname in ipairs(all) do
      if podname ~= "" and not seen[podname] then
        seen[podname] = true
        distinct = distinct + 1
        local child = names.child(podname)
        assert.is_true(valid(child), podname .. " -> " .. child)
        assert.is_true(names.is_dns1035(child), child)
        assert.equal(child, names.child(podname))
        local other = owner[child]
        if other then
          error(string.format("%q and %q share %q", podname, other, child))
        end
        owner[child] = podname
        if child ~= podname then
          local prefix = child:sub(1, -18)
          if prefix_owner[prefix] then
            shared_prefix = shared_prefix + 1
          end
          prefix_owner[prefix] = true
        end
      end
    end
    assert.is_true(distinct > 6000, "distinct names: " .. distinct)
    -- the loop proves something only if many names did sanitise alike
    assert.is_true(shared_prefix > 2000, "names sharing a prefix: " .. shared_prefix)
  end)
end)

describe("lib.names.for_pod", function()
  it("gives one name to every child kind and the real pod name to the path", function()
    assert.same({
      service = "web-v2-alice-" .. names.hash_hex("web.v2.alice"),
      endpointslice = "web-v2-alice-" .. names.hash_hex("web.v2.alice"),
      httproute = "web-v2-alice-" .. names.hash_hex("web.v2.alice"),
      port = "http",
      path = "/web.v2.alice",
    }, names.for_pod({ metadata = { name = "web.v2.alice" } }))
  end)

  it("returns nil and a reason for a pod without a name", function()
    local n, why = names.for_pod({ metadata = {} })
    assert.is_nil(n)
    assert.equal("pod has no metadata.name", why)
  end)
end)
