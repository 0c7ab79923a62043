// Drives Segment's official Node library (@segment/analytics-node) against a Tally server.
//
//     node segment_node.mjs URL WRITE_KEY
//
// Makes every kind of call the library has, then closes and flushes; exits non-zero if the
// library reported an error. The calling test checks what arrived.
import { Analytics } from '@segment/analytics-node'

const [url, writeKey] = process.argv.slice(2)
const errors = []
const analytics = new Analytics({ writeKey, host: url, flushAt: 3, maxRetries: 1 })
analytics.on('error', (e) => errors.push(String(e?.reason ?? e)))

const context = { ip: '198.51.100.9', userAgent: 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15' }
analytics.page({ anonymousId: 'node-anon', name: 'Home', properties: { url: 'https://shop.example/', path: '/' }, context })
analytics.track({ anonymousId: 'node-anon', event: 'Product Viewed', properties: { sku: 'B-2' }, context })
analytics.identify({ userId: 'node-user', anonymousId: 'node-anon', traits: { plan: 'team', name: 'Node' } })
analytics.track({ userId: 'node-user', event: 'Order Completed', properties: { revenue: 20 } })
analytics.screen({ userId: 'node-user', name: 'Dashboard' })
analytics.group({ userId: 'node-user', groupId: 'node-company', traits: { name: 'Node Co', seats: 9 } })
analytics.alias({ userId: 'node-user', previousId: 'node-legacy' })
analytics.track({ userId: 'node-legacy', event: 'Order Completed', properties: { revenue: 5 } })
await analytics.closeAndFlush({ timeout: 20000 })
if (errors.length) {
  console.error(errors.join('\n'))
  process.exit(1)
}
console.log('sent')
