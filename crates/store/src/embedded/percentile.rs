//! An exact percentile aggregate: `percentile_cont` semantics (linear interpolation between the
//! closest ranks, as PostgreSQL and ClickHouse's `quantileExactInclusive`), computed in f64.
//!
//! DataFusion's own `percentile_cont` quantizes the interpolation weight to 1e-6 (p95 of
//! 1, 2, 3, 4, 10 comes out as 8.799994 instead of 8.8); a user comparing with any other tool would
//! see different numbers, so Tally uses this one.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, ListArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

/// One group's values as a one-row list (the partial state).
fn list_of<'a>(groups: impl IntoIterator<Item = &'a [f64]>) -> ListArray {
    ListArray::from_iter_primitive::<Float64Type, _, _>(
        groups
            .into_iter()
            .map(|v| Some(v.iter().map(|x| Some(*x)).collect::<Vec<_>>())),
    )
}

/// The accumulator of one group (DataFusion uses it without GROUP BY).
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
        Ok(vec![ScalarValue::List(Arc::new(list_of([self
            .values
            .as_slice()])))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for list in states[0].as_list::<i32>().iter().flatten() {
            self.values
                .extend(list.as_primitive::<Float64Type>().iter().flatten());
        }
        Ok(())
    }
}

/// The accumulator of every group at once (DataFusion's fast path for GROUP BY): values are
/// appended to their group's vector by index, without slicing the input per group.
#[derive(Debug)]
struct ExactPercentileGroups {
    p: f64,
    groups: Vec<Vec<f64>>,
}

impl GroupsAccumulator for ExactPercentileGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, Vec::new);
        let a = values[0].as_primitive::<Float64Type>();
        for (row, &g) in group_indices.iter().enumerate() {
            if opt_filter.is_some_and(|f| !f.is_valid(row) || !f.value(row)) || a.is_null(row) {
                continue;
            }
            let v = a.value(row);
            if !v.is_nan() {
                self.groups[g].push(v);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let mut taken = emit_to.take_needed(&mut self.groups);
        let out: Float64Array = taken.iter_mut().map(|v| interpolate(v, self.p)).collect();
        Ok(Arc::new(out))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let taken = emit_to.take_needed(&mut self.groups);
        Ok(vec![Arc::new(list_of(taken.iter().map(Vec::as_slice)))])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, Vec::new);
        let lists = values[0].as_list::<i32>();
        for (row, &g) in group_indices.iter().enumerate() {
            if lists.is_null(row) {
                continue;
            }
            let list = lists.value(row);
            self.groups[g].extend(list.as_primitive::<Float64Type>().iter().flatten());
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // Each row as a state of its own: a list of its value, or an empty one.
        let a = values[0].as_primitive::<Float64Type>();
        let rows: Vec<Vec<f64>> = (0..a.len())
            .map(|row| {
                let skip = opt_filter.is_some_and(|f| !f.is_valid(row) || !f.value(row))
                    || a.is_null(row)
                    || a.value(row).is_nan();
                if skip { Vec::new() } else { vec![a.value(row)] }
            })
            .collect();
        Ok(vec![Arc::new(list_of(rows.iter().map(Vec::as_slice)))])
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.groups.capacity() * std::mem::size_of::<Vec<f64>>()
            + self
                .groups
                .iter()
                .map(|g| g.capacity() * std::mem::size_of::<f64>())
                .sum::<usize>()
    }
}

/// The `p`-th percentile of `values` (reordered in place): linear interpolation between the
/// two closest ranks, found by selection rather than a full sort.
fn interpolate(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let pos = p * (values.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let (_, &mut low, above) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let high = if hi == lo {
        low
    } else {
        // The next rank is the smallest value above the `lo`-th.
        above.iter().copied().min_by(f64::total_cmp).unwrap_or(low)
    };
    Some(low + (high - low) * (pos - lo as f64))
}

/// The exact percentile as a DataFusion aggregate function.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ExactPercentileUdf {
    name: String,
    /// `p` as its bits, so that the function can be compared and hashed.
    p_bits: u64,
    signature: Signature,
}

impl ExactPercentileUdf {
    fn p(&self) -> f64 {
        f64::from_bits(self.p_bits)
    }
}

impl AggregateUDFImpl for ExactPercentileUdf {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(ExactPercentile {
            p: self.p(),
            values: Vec::new(),
        }))
    }

    fn state_fields(&self, _args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            "values",
            DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true))),
            true,
        ))])
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(ExactPercentileGroups {
            p: self.p(),
            groups: Vec::new(),
        }))
    }
}

/// The aggregate for percentile `p` (0..=1) of a Float64 argument.
pub(crate) fn exact_percentile(p: f64) -> AggregateUDF {
    AggregateUDF::from(ExactPercentileUdf {
        name: format!("tally_percentile_{p}"),
        p_bits: p.to_bits(),
        signature: Signature::exact(vec![DataType::Float64], Volatility::Immutable),
    })
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
        // Selection agrees with sorting, duplicates included.
        let values: Vec<f64> = (0..1000).map(|i| ((i * 7919) % 613) as f64 / 7.0).collect();
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        for p in [0.0f64, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0] {
            let pos: f64 = p * 999.0;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            let want = sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64);
            assert_eq!(interpolate(&mut values.clone(), p), Some(want), "p = {p}");
        }
    }

    #[test]
    fn groups_accumulate_merge_and_evaluate_per_group() {
        let mut a = ExactPercentileGroups {
            p: 0.5,
            groups: Vec::new(),
        };
        let values: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(1.0),
            Some(10.0),
            None,
            Some(3.0),
            Some(f64::NAN),
            Some(20.0),
        ]));
        a.update_batch(&[values], &[0, 1, 0, 0, 1, 1], None, 2)
            .unwrap();
        // A second partial state, merged: group 0 gets 2.0, a new group 2 gets 7.0.
        let mut b = ExactPercentileGroups {
            p: 0.5,
            groups: vec![vec![2.0], vec![], vec![7.0]],
        };
        let state = b.state(EmitTo::All).unwrap();
        a.merge_batch(&state, &[0, 1, 2], 3).unwrap();
        let out = a.evaluate(EmitTo::All).unwrap();
        let out = out.as_primitive::<Float64Type>();
        // Group 0: 1, 3, 2 → 2; group 1: 10, 20 → 15; group 2: 7.
        assert_eq!(out.values().to_vec(), vec![2.0, 15.0, 7.0]);
    }
}
