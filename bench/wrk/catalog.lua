-- catalog.lua - wrk load for the product API: one scenario per run.
--
-- Settings come from the environment (bench/bench.sh sets them):
--
--   BENCH_SCENARIO  hot       GET /products/{id}, id uniform in 1..BENCH_HOT
--                   cold      GET, every id once: thread t walks its own
--                             slice of 1..BENCH_PRODUCTS, starting
--                             BENCH_COLD_PHASE (0..1) of the way into it
--                   zipf      GET, id Zipf(s=1) over 1..BENCH_PRODUCTS
--                   notfound  GET, id uniform in 10^9+1..10^9+BENCH_HOT
--                   mixed     zipf GETs, and BENCH_PUT_PERCENT % PUTs of a
--                             zipf id with a new price and the other
--                             fields as bench/products.sql made them
--                   fixed     GET / (the bare HTTP ceiling)
--   BENCH_PRODUCTS, BENCH_HOT, BENCH_THREADS (wrk's -t), BENCH_SEED,
--   BENCH_COLD_PHASE, BENCH_PUT_PERCENT, BENCH_API_KEY (sent as Bearer
--   with the PUTs)
--
-- Each wrk thread has its own Lua state: response() counts statuses and
-- X-Cache values (ours: HIT, MISS, BYPASS...) in that state, setup() keeps every thread, and done() (in the main state)
-- adds up the threads' counters and prints one line:
--
--   BENCH_RESULT {"requests":...,"rps":...,"p50_us":...,"statuses":{...}}

local scenario = os.getenv("BENCH_SCENARIO") or "hot"
local products = tonumber(os.getenv("BENCH_PRODUCTS") or "100000")
local hot = math.min(tonumber(os.getenv("BENCH_HOT") or "1000"), products)
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
local seed = tonumber(os.getenv("BENCH_SEED") or "1")
local cold_phase = tonumber(os.getenv("BENCH_COLD_PHASE") or "0")
local put_frac = tonumber(os.getenv("BENCH_PUT_PERCENT") or "10") / 100
local NOTFOUND_BASE = 1000000000

local valid = {hot = 1, cold = 1, zipf = 1, notfound = 1, mixed = 1,
	fixed = 1}
if not valid[scenario] then
	error("catalog.lua: unknown BENCH_SCENARIO " .. scenario)
end

-- Thread bookkeeping (main state) -----------------------------------------

local threads = {}
local next_tid = 0

function setup(thread)
	thread:set("tid", next_tid)
	next_tid = next_tid + 1
	table.insert(threads, thread)
end

-- Per-thread state ----------------------------------------------------------

tid = 0
statuses = {}
xcache = {}
reused = 0

local cdf            -- zipf: cdf[k] = P(id <= k)
local cold_lo, cold_size, cold_start, cold_i
local get_headers = {}
local put_headers = {["Content-Type"] = "application/json"}
-- Writes need the API key that bench.sh made for its gateways.
if os.getenv("BENCH_API_KEY") then
	put_headers["Authorization"] = "Bearer " .. os.getenv("BENCH_API_KEY")
end

-- The product generator; must match bench/products.sql word for word,
-- so that a PUT changes the price and nothing else.
local ADJ = {"Classic", "Compact", "Deluxe", "Eco", "Ultra", "Smart",
	"Rugged", "Travel", "Pro", "Mini"}
local NOUN = {"Kettle", "Backpack", "Desk Lamp", "Headphones",
	"Water Bottle", "Notebook", "Office Chair", "Blender", "Umbrella",
	"Keyboard", "Toaster", "Rain Jacket"}
local MATERIAL = {"brushed steel", "recycled plastic", "oak veneer",
	"anodised aluminium", "bamboo", "ripstop nylon", "tempered glass"}
local COLOUR = {"matte black", "chalk white", "slate grey", "forest green",
	"navy blue", "desert sand"}
local BLURB = {"Built to last, it comes with a two-year warranty",
	"Light enough to carry every day without noticing it",
	"Made from recycled materials wherever we could",
	"A customer favourite since the day it was launched",
	"Quiet, efficient and easy to clean after use"}
local CITY = {"Rotterdam", "Leipzig", "Lyon", "Porto", "Gdansk"}

local function pick(list, i)
	return list[1 + i % #list]
end

local function product_json(id, price)
	local adj = pick(ADJ, id)
	local noun = pick(NOUN, math.floor(id / 10))
	local desc = string.format(
		"The %s %s (model %d) is made of %s and comes in %s. %s. " ..
		"It measures %d x %d x %d cm and weighs %d g. Every unit is " ..
		"tested in our %s warehouse before it ships, within %d " ..
		"business days, with free returns for 30 days.",
		adj:lower(), noun:lower(), id, pick(MATERIAL, id),
		pick(COLOUR, math.floor(id / 7)), pick(BLURB, id),
		10 + id % 40, 5 + id % 25, 2 + id % 15, 150 + (id * 13) % 2800,
		pick(CITY, math.floor(id / 3)), 1 + id % 5)
	return string.format(
		'{"sku":"SKU-%d","name":"%s %s %d","description":"%s",' ..
		'"price_cents":%d,"currency":"USD","stock":%d}',
		id, adj, noun, id, desc, price, (id * 37) % 250)
end

local function zipf_id()
	local u = math.random()
	local lo, hi = 1, products
	while lo < hi do
		local mid = math.floor((lo + hi) / 2)
		if cdf[mid] < u then
			lo = mid + 1
		else
			hi = mid
		end
	end
	return lo
end

function init(args)
	math.randomseed(seed * 1000 + tid * 7919 + 1)
	if scenario == "zipf" or scenario == "mixed" then
		cdf = {}
		local h = 0
		for k = 1, products do
			h = h + 1 / k
			cdf[k] = h
		end
		for k = 1, products do
			cdf[k] = cdf[k] / h
		end
	elseif scenario == "cold" then
		local lo = math.floor(tid * products / nthreads) + 1
		local hi = math.floor((tid + 1) * products / nthreads)
		cold_lo = lo
		cold_size = math.max(hi - lo + 1, 1)
		cold_start = math.floor(cold_size * cold_phase) % cold_size
		cold_i = 0
	end
end

local function get(id)
	return wrk.format("GET", "/products/" .. id, get_headers)
end

function request()
	if scenario == "hot" then
		return get(math.random(1, hot))
	elseif scenario == "cold" then
		if cold_i >= cold_size then
			-- The slice is used up: this id was asked before.
			reused = reused + 1
		end
		local id = cold_lo + (cold_start + cold_i) % cold_size
		cold_i = cold_i + 1
		return get(id)
	elseif scenario == "zipf" then
		return get(zipf_id())
	elseif scenario == "notfound" then
		return get(NOTFOUND_BASE + math.random(1, hot))
	elseif scenario == "mixed" then
		local id = zipf_id()
		if math.random() < put_frac then
			local price = 100 + math.random(0, 99999)
			return wrk.format("PUT", "/products/" .. id, put_headers,
				product_json(id, price))
		end
		return get(id)
	end
	return wrk.format("GET", "/", get_headers)
end

function response(status, headers, body)
	statuses[status] = (statuses[status] or 0) + 1
	local xc = headers["X-Cache"]
	if xc then
		xcache[xc] = (xcache[xc] or 0) + 1
	end
end

-- Summary (main state) ------------------------------------------------------

function done(summary, latency, requests)
	local total = {}
	local xc_total = {}
	local reused_all = 0
	for _, thread in ipairs(threads) do
		for status, n in pairs(thread:get("statuses") or {}) do
			total[status] = (total[status] or 0) + n
		end
		for value, n in pairs(thread:get("xcache") or {}) do
			xc_total[value] = (xc_total[value] or 0) + n
		end
		reused_all = reused_all + (thread:get("reused") or 0)
	end
	local parts = {}
	for status, n in pairs(total) do
		table.insert(parts, string.format('"%d":%d', status, n))
	end
	table.sort(parts)
	local xparts = {}
	for value, n in pairs(xc_total) do
		if value:match("^[%w_-]+$") then
			table.insert(xparts, string.format('"%s":%d', value, n))
		end
	end
	table.sort(xparts)
	local e = summary.errors
	local secs = summary.duration / 1e6
	io.write(string.format(
		'BENCH_RESULT {"requests":%d,"duration_s":%.3f,"rps":%.1f,' ..
		'"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
		'"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
		'"status":%d},"statuses":{%s},"x_cache":{%s},"reused_ids":%d}\n',
		summary.requests, secs, summary.requests / secs,
		latency:percentile(50), latency:percentile(90),
		latency:percentile(99), latency.max,
		e.connect, e.read, e.write, e.timeout, e.status,
		table.concat(parts, ","), table.concat(xparts, ","), reused_all))
end
