-- products.sql - loads :products benchmark products into an empty catalog.
--
--   psql -v products=100000 -f bench/products.sql catalog
--
-- Product g gets id g, sku SKU-g, a name and a description of about 300
-- bytes built from word lists by g. bench/wrk/catalog.lua builds the same
-- fields for its PUTs (only the price changes), so both must stay word for
-- word alike; bench.sh checks that after the mixed scenario with
-- bench.mismatches().
\set ON_ERROR_STOP 1

CREATE SCHEMA IF NOT EXISTS bench;

CREATE OR REPLACE FUNCTION bench.pick(list text[], i bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT list[1 + i % array_length(list, 1)]
$$;

CREATE OR REPLACE FUNCTION bench.adj(g bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT bench.pick(ARRAY['Classic', 'Compact', 'Deluxe', 'Eco', 'Ultra',
		'Smart', 'Rugged', 'Travel', 'Pro', 'Mini'], g)
$$;

CREATE OR REPLACE FUNCTION bench.noun(g bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT bench.pick(ARRAY['Kettle', 'Backpack', 'Desk Lamp', 'Headphones',
		'Water Bottle', 'Notebook', 'Office Chair', 'Blender', 'Umbrella',
		'Keyboard', 'Toaster', 'Rain Jacket'], g / 10)
$$;

CREATE OR REPLACE FUNCTION bench.name(g bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT bench.adj(g) || ' ' || bench.noun(g) || ' ' || g
$$;

CREATE OR REPLACE FUNCTION bench.description(g bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT format('The %s %s (model %s) is made of %s and comes in %s. %s. '
		'It measures %s x %s x %s cm and weighs %s g. Every unit is '
		'tested in our %s warehouse before it ships, within %s '
		'business days, with free returns for 30 days.',
		lower(bench.adj(g)), lower(bench.noun(g)), g,
		bench.pick(ARRAY['brushed steel', 'recycled plastic', 'oak veneer',
			'anodised aluminium', 'bamboo', 'ripstop nylon',
			'tempered glass'], g),
		bench.pick(ARRAY['matte black', 'chalk white', 'slate grey',
			'forest green', 'navy blue', 'desert sand'], g / 7),
		bench.pick(ARRAY['Built to last, it comes with a two-year warranty',
			'Light enough to carry every day without noticing it',
			'Made from recycled materials wherever we could',
			'A customer favourite since the day it was launched',
			'Quiet, efficient and easy to clean after use'], g),
		10 + g % 40, 5 + g % 25, 2 + g % 15, 150 + (g * 13) % 2800,
		bench.pick(ARRAY['Rotterdam', 'Leipzig', 'Lyon', 'Porto',
			'Gdansk'], g / 3),
		1 + g % 5)
$$;

-- Rows whose fields other than price, version and times differ from the
-- generator: 0 unless a PUT sent something else.
CREATE OR REPLACE FUNCTION bench.mismatches() RETURNS bigint
LANGUAGE sql STABLE AS $$
	SELECT count(*) FROM products
	WHERE sku <> 'SKU-' || id OR name <> bench.name(id)
	   OR description <> bench.description(id) OR currency <> 'USD'
	   OR stock <> (id * 37) % 250
$$;

INSERT INTO products (id, sku, name, description, price_cents, currency,
                      stock)
OVERRIDING SYSTEM VALUE
SELECT g, 'SKU-' || g, bench.name(g), bench.description(g),
       199 + (g * 7919) % 49800, 'USD', (g * 37) % 250
FROM generate_series(1, :products) AS g;

SELECT setval(pg_get_serial_sequence('products', 'id'), :products);
