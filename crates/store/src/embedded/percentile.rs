//! An exact percentile aggregate: `percentile_cont` semantics (linear interpolation between the
//! closest ranks, as PostgreSQL and ClickHouse's `quantileExactInclusive`), computed in f64.
//!
//! DataFusion's own `percentile_cont` quantizes the interpolation weight to 1e-6 (p95 of
//! 1, 2, 3, 4, 10 comes out as 8.799994 instead of 8.8); a user comparing with any other tool would
//! see different numbers, so Tally uses this one.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{Accumulator, AggregateUDF, Volatility, create_udaf};

#[derive(Debug)]
struct ExactPercentile {
    p: f64,
    values: Vec<f64>,
}

impl Accumulator for ExactPercentile {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let a = values[0].as_primitive::<Float64Type>();
        self.values
            .extend(a.iter().flatten().filter(|v| !v.is_nan()));
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(interpolate(&mut self.values, self.p)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.capacity() * std::mem::size_of::<f64>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let values: Vec<ScalarValue> = self
            .values
            .iter()
            .map(|v| ScalarValue::Float64(Some(*v)))
            .collect();
        Ok(vec![ScalarValue::List(ScalarValue::new_list_nullable(
            &values,
            &DataType::Float64,
        ))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for list in states[0].as_list::<i32>().iter().flatten() {
            self.values
                .extend(list.as_primitive::<Float64Type>().iter().flatten());
        }
        Ok(())
    }
}

fn interpolate(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable_by(f64::total_cmp);
    let pos = p * (values.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(values[lo] + (values[hi] - values[lo]) * (pos - lo as f64))
}

/// The aggregate for percentile `p` (0..=1) of a Float64 argument.
pub(crate) fn exact_percentile(p: f64) -> AggregateUDF {
    create_udaf(
        &format!("tally_percentile_{p}"),
        vec![DataType::Float64],
        Arc::new(DataType::Float64),
        Volatility::Immutable,
        Arc::new(move |_| {
            Ok(Box::new(ExactPercentile {
                p,
                values: Vec::new(),
            }))
        }),
        Arc::new(vec![DataType::List(Arc::new(Field::new_list_field(
            DataType::Float64,
            true,
        )))]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_exactly() {
        let mut v = vec![4.0, 1.0, 10.0, 3.0, 2.0];
        assert_eq!(interpolate(&mut v, 0.5), Some(3.0));
        assert!((interpolate(&mut v, 0.95).unwrap() - 8.8).abs() < 1e-12);
        assert_eq!(interpolate(&mut v, 1.0), Some(10.0));
        assert_eq!(interpolate(&mut [], 0.5), None);
    }
}
