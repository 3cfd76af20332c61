//! Statements written as SQL that run as cached prepared statements.
//!
//! diesel caches a statement per connection only when it can tell its text never changes:
//! never for `sql_query`, an `UPDATE`, `ON CONFLICT DO UPDATE` or a multi-row insert. Each of
//! those is parsed again on every call, a round trip of its own. [`prepared`] takes SQL that is
//! the same on every call (a `&'static str`; lists go in as arrays, e.g. `unnest($1::uuid[])`),
//! so diesel keeps it prepared under its text: after the first call on a connection it is one
//! round trip, bind and execute.

use std::marker::PhantomData;

use diesel::{
    pg::Pg,
    query_builder::{AstPass, Query, QueryFragment, QueryId},
    serialize::ToSql,
    sql_types::{HasSqlType, Untyped},
};

/// A statement of fixed text with its parameters. Bind `$1`, `$2`, … in order with
/// [`Prepared::bind`] (each `$n` may appear more than once), then run it with diesel-async's
/// `RunQueryDsl`; rows load into `QueryableByName` types. `$` must not appear in the text
/// other than in placeholders.
#[must_use = "a statement runs only when executed or loaded"]
pub struct Prepared<'a> {
    sql: &'static str,
    params: Vec<Box<dyn QueryFragment<Pg> + Send + 'a>>,
}

impl std::fmt::Debug for Prepared<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("sql", &self.sql)
            .field("params", &self.params.len())
            .finish()
    }
}

/// A statement of fixed text, cached as a prepared statement on each connection.
pub fn prepared<'a>(sql: &'static str) -> Prepared<'a> {
    Prepared {
        sql,
        params: Vec::new(),
    }
}

impl<'a> Prepared<'a> {
    /// Binds the next parameter as SQL type `ST`.
    pub fn bind<ST, V>(mut self, value: V) -> Self
    where
        Pg: HasSqlType<ST>,
        V: ToSql<ST, Pg> + Send + 'a,
        ST: Send + 'a,
    {
        self.params.push(Box::new(Param {
            value,
            sql_type: PhantomData,
        }));
        self
    }
}

struct Param<ST, V> {
    value: V,
    sql_type: PhantomData<ST>,
}

impl<ST, V> QueryFragment<Pg> for Param<ST, V>
where
    Pg: HasSqlType<ST>,
    V: ToSql<ST, Pg>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        out.push_bind_param::<ST, V>(&self.value)
    }
}

impl QueryFragment<Pg> for Prepared<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        // The text goes out as written, each `$n` as its parameter (diesel numbers them again
        // in order of appearance, so the text is still the same on every call). Nothing here
        // marks the statement unsafe to cache, unlike `sql_query`.
        let mut rest = self.sql;
        while let Some(at) = rest.find('$') {
            out.push_sql(&rest[..at]);
            let digits = rest[at + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(rest.len() - at - 1, |end| end);
            let number: usize = rest[at + 1..at + 1 + digits].parse().map_err(|_| {
                diesel::result::Error::QueryBuilderError(
                    format!("a `$` that is no placeholder in: {}", self.sql).into(),
                )
            })?;
            let param = number
                .checked_sub(1)
                .and_then(|index| self.params.get(index))
                .ok_or_else(|| {
                    diesel::result::Error::QueryBuilderError(
                        format!("${number} is not bound in: {}", self.sql).into(),
                    )
                })?;
            param.walk_ast(out.reborrow())?;
            rest = &rest[at + 1 + digits..];
        }
        out.push_sql(rest);
        Ok(())
    }
}

impl QueryId for Prepared<'_> {
    type QueryId = ();
    /// No type of its own: the cache keys it by its text and parameter types.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Prepared<'_> {
    type SqlType = Untyped;
}

#[cfg(test)]
mod tests {
    use diesel::sql_types::{Array, BigInt, Text};

    use super::*;

    #[test]
    fn placeholders_become_parameters_in_order() {
        let statement = prepared("SELECT $1::int8 + $2, $1 FROM unnest($3::text[])")
            .bind::<BigInt, _>(1_i64)
            .bind::<BigInt, _>(2_i64)
            .bind::<Array<Text>, _>(vec!["a"]);
        assert_eq!(
            diesel::debug_query::<Pg, _>(&statement).to_string(),
            "SELECT $1::int8 + $2, $3 FROM unnest($4::text[]) -- binds: [1, 2, 1, [\"a\"]]"
        );
    }

    #[test]
    fn an_unbound_placeholder_is_an_error() {
        let statement = prepared("SELECT $2").bind::<BigInt, _>(1_i64);
        let mut builder = diesel::pg::PgQueryBuilder::default();
        assert!(statement.to_sql(&mut builder, &Pg).is_err());
    }
}
