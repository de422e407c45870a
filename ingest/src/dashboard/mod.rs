//! The integrations page (`/dashboard/integrations?customerId=`): server-rendered HTML, no JavaScript,
//! mirroring the seed's UX — a "Connect Instagram" button, then a green "Instagram Connected" card with
//! `@username`, connection date, status and a Disconnect button; the OAuth outcome as a banner.
//!
//! Access: the operator signs in once with the admin token (`/dashboard/login`) and gets a signed,
//! `HttpOnly`, `SameSite=Lax` session cookie (12 hours). `Lax` keeps the cookie on Meta's redirect back
//! (a top-level GET) but off cross-site POSTs; the forms also carry a CSRF token derived from the session.

mod html;
mod session;

use crate::api::ApiError;
use crate::app::AppState;
use crate::store::{connections, customers};
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use session::Session;
use uuid::Uuid;

/// The dashboard routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/dashboard/login", get(login_form).post(login))
        .route("/dashboard/logout", post(logout))
        .route("/dashboard/integrations", get(integrations))
        .route("/dashboard/integrations/connect", post(connect))
        .route("/dashboard/integrations/disconnect", post(disconnect))
        .with_state(state)
}

/// `?next=&failed=`.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    failed: Option<String>,
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

/// `?customerId=&success=&error=`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageQuery {
    customer_id: Option<String>,
    success: Option<String>,
    error: Option<String>,
}

/// The connect and disconnect forms' fields.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionForm {
    customer_id: String,
    account_id: Option<String>,
    csrf: String,
}

async fn login_form(State(state): State<AppState>, Query(query): Query<LoginQuery>) -> Response {
    page(
        &state,
        html::login(&safe_next(query.next.as_deref()), query.failed.is_some()),
    )
}

async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    let next = safe_next(form.next.as_deref());
    if !state.admin.check(&form.token) {
        tracing::warn!("dashboard sign-in with a wrong token");
        let again = format!("/dashboard/login?failed=1&next={}", html::url_encode(&next));
        return Redirect::to(&again).into_response();
    }
    let session = Session::issue(&state.admin);
    let secure = state.connector.app_url.starts_with("https://");
    (
        [(header::SET_COOKIE, session.cookie(secure))],
        Redirect::to(&next),
    )
        .into_response()
}

async fn logout() -> Response {
    (
        [(header::SET_COOKIE, Session::clear_cookie())],
        Redirect::to("/dashboard/login"),
    )
        .into_response()
}

async fn integrations(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<PageQuery>,
) -> Response {
    let Some(session) = Session::from_headers(&headers, &state.admin) else {
        let here = uri
            .path_and_query()
            .map_or("/dashboard/integrations", |p| p.as_str());
        return to_login(here);
    };
    match render_integrations(&state, &session, query).await {
        Ok(body) => page(&state, body),
        Err(error) => error_page(&state, error),
    }
}

async fn render_integrations(
    state: &AppState,
    session: &Session,
    query: PageQuery,
) -> Result<String, ApiError> {
    let pool = state.db.pool()?;
    let banner = html::banner(query.success.as_deref(), query.error.as_deref());
    let Some(customer_id) = query.customer_id.as_deref().and_then(|c| Uuid::parse_str(c).ok()) else {
        let all = customers::list(pool, 200).await?;
        return Ok(html::customer_picker(&all, banner));
    };
    let Some(customer) = customers::get(pool, customer_id).await? else {
        return Err(ApiError::not_found("customer"));
    };
    let accounts = connections::for_customer(pool, customer_id).await?;
    Ok(html::integrations(
        &customer,
        &accounts,
        banner,
        &session.csrf(&state.admin),
    ))
}

async fn connect(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let customer = match authorize_action(&state, &headers, &form) {
        Ok(customer) => customer,
        Err(response) => return *response,
    };
    match state.connector.start(customer).await {
        // 303: the browser follows with a GET to Meta's dialog.
        Ok(url) => Redirect::to(&url).into_response(),
        Err(error) => error_page(&state, error),
    }
}

async fn disconnect(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let customer = match authorize_action(&state, &headers, &form) {
        Ok(customer) => customer,
        Err(response) => return *response,
    };
    let target = match state
        .connector
        .disconnect(customer, form.account_id.as_deref())
        .await
    {
        Ok(_) => format!("/dashboard/integrations?customerId={customer}&success=instagram_disconnected"),
        Err(error) if error.status == StatusCode::NOT_FOUND => {
            format!("/dashboard/integrations?customerId={customer}&error=not_connected")
        }
        Err(error) => return error_page(&state, error),
    };
    Redirect::to(&target).into_response()
}

/// Session and CSRF checks for a form POST; the customer it acts for.
fn authorize_action(state: &AppState, headers: &HeaderMap, form: &ActionForm) -> Result<Uuid, Box<Response>> {
    let Some(session) = Session::from_headers(headers, &state.admin) else {
        return Err(Box::new(to_login("/dashboard/integrations")));
    };
    if !session.check_csrf(&state.admin, &form.csrf) {
        tracing::warn!("dashboard form with a bad CSRF token");
        return Err(Box::new(
            ApiError::new(StatusCode::FORBIDDEN, "csrf", "the form expired; reload the page").into_response(),
        ));
    }
    Uuid::parse_str(&form.customer_id).map_err(|_| {
        Box::new(error_page(
            state,
            ApiError::bad_request("invalid_id", "customerId must be a UUID"),
        ))
    })
}

/// To the sign-in form, coming back to `here` afterwards.
fn to_login(here: &str) -> Response {
    Redirect::to(&format!("/dashboard/login?next={}", html::url_encode(here))).into_response()
}

/// Only our own dashboard paths may follow a login: never an absolute or protocol-relative URL.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/dashboard/") && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/dashboard/integrations".to_owned(),
    }
}

/// A page with a strict policy: no scripts at all, forms may only go to us and, through the Connect
/// redirect, to Meta's dialog.
fn page(state: &AppState, body: String) -> Response {
    let policy = format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' {}; frame-ancestors 'none'; base-uri 'none'",
        state.connector.login.dialog_origin()
    );
    let mut response = Html(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    if let Ok(value) = header::HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    response
}

fn error_page(state: &AppState, error: ApiError) -> Response {
    let status = error.status;
    let mut response = page(state, html::error(&error.message));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_dashboard_paths_follow_a_login() {
        assert_eq!(
            safe_next(Some("/dashboard/integrations?customerId=x")),
            "/dashboard/integrations?customerId=x"
        );
        for evil in [
            "https://evil.example",
            "//evil.example/dashboard/",
            "/\\evil",
            "/api/x",
            "",
        ] {
            assert_eq!(safe_next(Some(evil)), "/dashboard/integrations", "{evil}");
        }
        assert_eq!(safe_next(None), "/dashboard/integrations");
    }
}
