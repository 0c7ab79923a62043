//! Sends a few events to a running Tally.
//!
//!     cargo run -p tally-sdk --example send -- http://localhost:8080 tw_your_write_key

use std::time::Duration;

use tally_sdk::{Config, Event, EventManager, Identify};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(key)) = (args.next(), args.next()) else {
        eprintln!("usage: send URL WRITE_KEY");
        std::process::exit(2);
    };
    let tally = EventManager::start(Config::new(url, key))?;
    tally.track(
        Event::new("page viewed")
            .anonymous_id("visitor-7")
            .property("path", "/pricing"),
    );
    tally.identify(
        Identify::new("user-7")
            .anonymous_id("visitor-7")
            .trait_("plan", "pro"),
    );
    tally.track(
        Event::action("video", "play")
            .user_id("user-7")
            .label("intro")
            .value(30.0),
    );
    // Bounded: a service should not wait forever for analytics.
    tokio::time::timeout(Duration::from_secs(10), tally.flush()).await??;
    println!("{:?}", tally.stats());
    tally.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
