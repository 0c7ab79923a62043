"""Drives PostHog's official Python library (posthog) against a Tally server.

    python posthog_python.py URL WRITE_KEY

Captures events, sets person properties, merges an anonymous id (a `$identify` event, as
posthog-js sends it) and an alias, identifies a group, then flushes; exits non-zero if the
library reported an error. The calling test checks what arrived.
"""
import sys

from posthog import Posthog

url, key = sys.argv[1], sys.argv[2]
errors = []
ph = Posthog(
    project_api_key=key,
    host=url,
    gzip=True,
    max_retries=1,
    on_error=lambda e, batch: errors.append(repr(e)),
    enable_exception_autocapture=False,
)
anon = {"$is_identified": False}
ph.capture("$pageview", distinct_id="ph-anon", properties={**anon, "$current_url": "https://shop.example/docs?utm_source=newsletter", "$referrer": "https://www.google.com/", "title": "Docs"})
ph.capture("Product Viewed", distinct_id="ph-anon", properties={**anon, "sku": "C-3"})
ph.capture("$identify", distinct_id="ph-user", properties={"$anon_distinct_id": "ph-anon", "$set": {"plan": "scale"}})
ph.set(distinct_id="ph-user", properties={"name": "Ph"})
ph.set_once(distinct_id="ph-user", properties={"plan": "ignored, already set", "first_seen": "today"})
ph.capture("Order Completed", distinct_id="ph-user", properties={"revenue": 12}, groups={"company": "ph-company"})
ph.group_identify("company", "ph-company", {"seats": 4}, distinct_id="ph-user")
ph.alias(previous_id="ph-user", distinct_id="ph-legacy")
ph.capture("Order Completed", distinct_id="ph-legacy", properties={"revenue": 3})
ph.flush()
ph.shutdown()
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print("sent")
