"""Drives Segment's official Python library (segment-analytics-python) against a Tally server.

    python segment_python.py URL WRITE_KEY

Makes every kind of call the library has, then flushes; exits non-zero if the library reported
an error. The calling test checks what arrived.
"""
import sys

from segment.analytics import Client

url, key = sys.argv[1], sys.argv[2]
errors = []
client = Client(
    write_key=key,
    host=url,
    gzip=True,
    on_error=lambda e, batch: errors.append(repr(e)),
    max_retries=1,
)
ctx = {"ip": "203.0.113.7", "userAgent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"}
client.page(anonymous_id="py-anon", name="Pricing", properties={"url": "https://shop.example/pricing", "path": "/pricing", "referrer": "https://news.example/"}, context=ctx)
client.track(anonymous_id="py-anon", event="Product Viewed", properties={"sku": "A-1"}, context=ctx)
client.identify(user_id="py-user", anonymous_id="py-anon", traits={"plan": "pro", "name": "Py"})
client.track(user_id="py-user", event="Order Completed", properties={"revenue": 42.5})
client.screen(user_id="py-user", name="Settings", properties={"tab": "billing"})
client.group(user_id="py-user", group_id="py-company", traits={"name": "Py Co", "seats": 3})
client.alias(previous_id="py-legacy", user_id="py-user")
client.track(user_id="py-legacy", event="Order Completed", properties={"revenue": 7.5})
client.flush()
client.join()
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print("sent")
