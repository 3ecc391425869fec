//! The generic REST path of a collection: list and read for any [`Resource`]; create, replace
//! and delete for the definitions clients write whole ([`Editable`]: plan scripts, build
//! plans, deployment plans). A new collection is a declaration (its [`Collection`], its plural
//! and its schemas) plus its domain rules; the handlers, their statuses (201 with the entity,
//! 202 with a completed task, 204, and the 400/404/409/412 of the domain) and their OpenAPI
//! documentation come from here.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::{
    ContentBuilder, Object, Paths, PathsBuilder, Ref, RefOr, Required, ResponseBuilder, Schema,
    Type,
};

use crate::api::body::{if_match, parse_body};
use crate::api::collection::{ListQuery, envelope};
use crate::api::error::ApiError;
use crate::api::task::accepted;
use crate::api::transport::Ctx;
use crate::api::version::ApiVersion;
use crate::domain::collection::Collection;
use crate::domain::definitions::{self, Definition};
use crate::domain::records;
use crate::meta::Record;
use crate::state::AppState;

/// The record as the API shows it: its document with the server fields (`id`, `uri`,
/// `eTag` (the store revision), `type` for the API version, `category`).
pub fn render(c: &Collection, r: &Record, v: ApiVersion) -> Value {
    let mut doc = r.value.clone();
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("id".into(), json!(r.id));
        obj.insert("uri".into(), json!(c.uri(&r.id)));
        obj.insert("eTag".into(), json!(r.revision.to_string()));
        obj.insert(
            "type".into(),
            json!(if v.v5() { c.type_v5 } else { c.type_v3 }),
        );
        obj.insert("category".into(), json!(c.category));
    }
    doc
}

/// A collection served by the generic list and read.
pub trait Resource: Send + Sync + 'static {
    const COLLECTION: &'static Collection;
    /// "plan scripts": the OpenAPI summaries say it.
    const PLURAL: &'static str;
    /// The OpenAPI schema of one member as returned, if it has one.
    const MEMBER_SCHEMA: Option<&'static str> = None;

    /// The record as the API shows it.
    fn render(st: &AppState, r: &Record, ctx: &Ctx) -> Value {
        let _ = st;
        render(Self::COLLECTION, r, ctx.version)
    }
}

/// `members` of `c` as HPE's collection envelope, paged, filtered and sorted by `q`.
pub fn collection_of(
    c: &Collection,
    members: Vec<Value>,
    q: &ListQuery,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(envelope(c.path, c.category, c.list_type, members, q)?))
}

/// Lists the collection (paged, filtered and sorted by the query).
pub async fn list<R: Resource>(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let c = R::COLLECTION;
    let members = st
        .services
        .meta
        .list(c.kind)?
        .iter()
        .map(|r| R::render(&st, r, &ctx))
        .collect();
    Ok(Json(envelope(
        c.path,
        c.category,
        c.list_type,
        members,
        &q,
    )?))
}

/// One member.
pub async fn read<R: Resource>(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = records::get(&*st.services.meta, R::COLLECTION, &id)?;
    Ok(Json(R::render(&st, &r, &ctx)))
}

/// A definition clients create, replace and delete through the generic path.
pub trait Editable: Resource + Definition {
    /// The OpenAPI schema of the input.
    const INPUT_SCHEMA: &'static str;
}

/// Creates a member: 201 with the entity and its `Location` (HPE's Go client needs the
/// entity back).
pub async fn create<D: Editable>(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: D::Input = parse_body(&body)?;
    let r = definitions::create::<D>(&st.services, &input)?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, <D as Definition>::COLLECTION.uri(&r.id))],
        Json(D::render(&st, &r, &ctx)),
    )
        .into_response())
}

/// Replaces a member: 202 with a completed task, as the HPE SDKs expect of a PUT.
pub async fn update<D: Editable>(
    State(st): State<Arc<AppState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let current = definitions::current::<D>(&st.services, &id, &if_match(&headers))?;
    let input: D::Input = parse_body(&body)?;
    let task = definitions::replace::<D>(&st.services, ctx.user(), &current, &input)?;
    Ok(accepted(&st.services.tasks, &task))
}

/// Deletes a member: 204.
pub async fn remove<D: Editable>(
    State(st): State<Arc<AppState>>,
    _ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let current = definitions::current::<D>(&st.services, &id, &if_match(&headers))?;
    definitions::delete::<D>(&st.services, &current)?;
    Ok(StatusCode::NO_CONTENT)
}

// The OpenAPI documentation of the generic handlers, in the shape the `utoipa::path`
// annotations of the other handlers produce.

fn schema_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

fn object() -> RefOr<Schema> {
    RefOr::T(Schema::Object(Object::with_type(Type::Object)))
}

fn json_response(description: &str, schema: RefOr<Schema>) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        )
        .build()
}

fn error_response() -> utoipa::openapi::Response {
    json_response("", schema_ref("ErrorBody"))
}

fn operation(
    tag: &str,
    id: &str,
    summary: String,
    ok: (&str, utoipa::openapi::Response),
    errors: &[&str],
) -> OperationBuilder {
    let mut op = OperationBuilder::new()
        .operation_id(Some(format!("{id}_{}", tag.replace('-', "_"))))
        .summary(Some(summary))
        .tag(tag)
        .response(ok.0, ok.1);
    for status in errors {
        op = op.response(*status, error_response());
    }
    op
}

fn id_parameter() -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name("id")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .schema(Some(RefOr::T(Schema::Object(Object::with_type(
            Type::String,
        )))))
        .build()
}

fn tag_of(c: &Collection) -> &'static str {
    c.path.trim_start_matches("/rest/")
}

/// `GET` of the collection and of a member.
pub fn read_paths<R: Resource>() -> Paths {
    let c = R::COLLECTION;
    let tag = tag_of(c);
    let mut list = operation(
        tag,
        "list",
        format!("Lists {}.", R::PLURAL),
        (
            "200",
            json_response(&format!("{} collection", c.type_v3), object()),
        ),
        &["400", "401"],
    );
    for p in <ListQuery as utoipa::IntoParams>::into_params(|| Some(ParameterIn::Query)) {
        list = list.parameter(p);
    }
    let (description, member) = match R::MEMBER_SCHEMA {
        Some(name) => ("", schema_ref(name)),
        None => (c.type_v3, object()),
    };
    let read = operation(
        tag,
        "read",
        format!("One {}.", c.noun),
        ("200", json_response(description, member)),
        &["404"],
    )
    .parameter(id_parameter());
    PathsBuilder::new()
        .path(c.path, PathItem::new(HttpMethod::Get, list))
        .path(
            format!("{}/{{id}}", c.path),
            PathItem::new(HttpMethod::Get, read),
        )
        .build()
}

/// Everything the generic path serves for `D`: list, read, create, replace, delete.
pub fn editable_paths<D: Editable>() -> Paths {
    let c = <D as Definition>::COLLECTION;
    let tag = tag_of(c);
    let input = RequestBodyBuilder::new()
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(schema_ref(D::INPUT_SCHEMA)))
                .build(),
        )
        .required(Some(Required::True))
        .build();
    let member = D::MEMBER_SCHEMA.map_or_else(object, schema_ref);
    let create = operation(
        tag,
        "create",
        format!("Creates a {} (synchronous: 201 with the entity).", c.noun),
        ("201", json_response("", member)),
        &["400", "409"],
    )
    .request_body(Some(input.clone()));
    let update = operation(
        tag,
        "update",
        format!(
            "Replaces a {}; answers 202 with a completed task. Read-only ones: 409.",
            c.noun
        ),
        ("202", json_response("TaskResourceV2", object())),
        &["400", "404", "409", "412"],
    )
    .parameter(id_parameter())
    .request_body(Some(input));
    let delete = operation(
        tag,
        "remove",
        format!(
            "Deletes a {}; refused (409) while something uses it or it is read-only.",
            c.noun
        ),
        ("204", ResponseBuilder::new().description("").build()),
        &["404", "409", "412"],
    )
    .parameter(id_parameter());
    let mut paths = read_paths::<D>();
    let item = format!("{}/{{id}}", c.path);
    paths.add_path_operation(c.path, vec![HttpMethod::Post], create.build());
    paths.add_path_operation(&item, vec![HttpMethod::Put], update.build());
    paths.add_path_operation(&item, vec![HttpMethod::Delete], delete.build());
    paths
}
