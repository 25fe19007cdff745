//! A route table that can say what it routes: each route is added once, with its method and path template, and
//! the same call registers it with axum and lists it. The OpenAPI check (`crate::openapi`) compares the list
//! with docs/openapi.json, so a route cannot be added without being documented, nor documented without existing.

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, on};

/// One route: a method and a path template as the router spells it (`/enrollments/{id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The HTTP method.
    pub method: Method,
    /// The path template, parameters in braces.
    pub path: String,
}

/// An axum router under construction, and the routes it has been given.
pub(crate) struct RouteTable<S> {
    router: Router<S>,
    routes: Vec<Route>,
}

impl<S: Clone + Send + Sync + 'static> RouteTable<S> {
    pub(crate) fn new() -> Self {
        Self { router: Router::new(), routes: Vec::new() }
    }

    /// Route `method` on `path` to `handler` (methods of one path may be added one call each).
    pub(crate) fn add<H: Handler<T, S>, T: 'static>(mut self, method: Method, path: &str, handler: H) -> Self {
        let filter = MethodFilter::try_from(method.clone()).expect("a method axum can route");
        self.router = self.router.route(path, on(filter, handler));
        self.routes.push(Route { method, path: path.to_string() });
        self
    }

    pub(crate) fn get<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::GET, path, handler)
    }

    pub(crate) fn put<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::PUT, path, handler)
    }

    pub(crate) fn post<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::POST, path, handler)
    }

    pub(crate) fn delete<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::DELETE, path, handler)
    }

    /// This table with `other`'s routes added.
    pub(crate) fn merge(mut self, other: RouteTable<S>) -> Self {
        self.router = self.router.merge(other.router);
        self.routes.extend(other.routes);
        self
    }

    /// The routes, in the order they were added.
    pub(crate) fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The router, for the caller to finish (fallback, state).
    pub(crate) fn into_router(self) -> Router<S> {
        self.router
    }
}
