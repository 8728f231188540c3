//! How long each step of a connect took, for the helper's log: the connect time is measured
//! end to end by the bench, and this says where inside the helper it went.

use std::fmt;
use std::time::{Duration, Instant};

/// Named steps, each timed from the end of the one before.
pub struct ConnectSteps {
    last: Instant,
    steps: Vec<(&'static str, Duration)>,
}

impl ConnectSteps {
    pub fn start() -> Self {
        Self {
            last: Instant::now(),
            steps: Vec::new(),
        }
    }

    /// Ends the step called `name` now.
    pub fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.record(name, now - self.last);
        self.last = now;
    }

    fn record(&mut self, name: &'static str, took: Duration) {
        self.steps.push((name, took));
    }
}

/// `resolve=0.1ms firewall=2.3ms ... total=9.8ms`
impl fmt::Display for ConnectSteps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        for (name, took) in &self.steps {
            write!(f, "{name}={:.1}ms ", ms(*took))?;
        }
        let total: Duration = self.steps.iter().map(|(_, d)| *d).sum();
        write!(f, "total={:.1}ms", ms(total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_step_is_shown_in_milliseconds_with_the_total() {
        let mut steps = ConnectSteps::start();
        steps.record("firewall", Duration::from_micros(2_340));
        steps.record("routes", Duration::from_micros(660));
        assert_eq!(steps.to_string(), "firewall=2.3ms routes=0.7ms total=3.0ms");
    }

    #[test]
    fn a_mark_times_the_step_since_the_previous_one() {
        let mut steps = ConnectSteps::start();
        std::thread::sleep(Duration::from_millis(5));
        steps.mark("first");
        steps.mark("second");
        let names: Vec<_> = steps.steps.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["first", "second"]);
        assert!(steps.steps[0].1 >= Duration::from_millis(5));
    }
}
