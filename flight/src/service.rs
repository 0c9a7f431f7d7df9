//! The Flight SQL service: each call names its tenant (see [`crate::auth`]), and every
//! statement is planned and run by [`QueryService`]. This file only translates between Flight
//! SQL messages and those calls.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use datafusion::common::ScalarValue;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{Stream, TryStreamExt};
use hearth_engine::model::TenantId;
use hearth_sql::{CATALOG, QueryService, SCHEMA};
use parking_lot::Mutex;
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Authenticator;
use crate::status;

type DoGetStream = <HearthFlightSql as FlightService>::DoGetStream;

/// A statement prepared by a client, with the parameters it last bound.
#[derive(Debug, Clone)]
struct Prepared {
    tenant: TenantId,
    sql: String,
    parameters: Vec<ScalarValue>,
}

pub struct HearthFlightSql {
    query: Arc<QueryService>,
    auth: Authenticator,
    prepared: Mutex<HashMap<Vec<u8>, Prepared>>,
    sql_info: SqlInfoData,
}

fn arrow_status(error: impl std::fmt::Display) -> Status {
    Status::internal(error.to_string())
}

fn schema_bytes(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(arrow_status)?;
    Ok(bytes)
}

fn flight_info(
    schema: &Schema,
    ticket: Ticket,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(arrow_status)?
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// Encodes record batches as Flight data; query errors keep their status.
fn encode(
    schema: SchemaRef,
    batches: datafusion::execution::SendableRecordBatchStream,
) -> Response<DoGetStream> {
    let batches = batches.map_err(|e| {
        let error = hearth_sql::Error::DataFusion(e);
        FlightError::Tonic(Box::new(status::from_query(error)))
    });
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches)
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

/// One batch of metadata rows as Flight data.
fn encode_batch<E: Into<Status>>(
    batch: Result<arrow::array::RecordBatch, E>,
) -> Result<Response<DoGetStream>, Status> {
    let batch = batch.map_err(Into::into)?;
    let schema = batch.schema();
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::once(async move { Ok(batch) }))
        .map_err(Status::from);
    Ok(Response::new(Box::pin(stream)))
}

impl std::fmt::Debug for HearthFlightSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HearthFlightSql")
            .field("auth", &self.auth)
            .field("prepared", &self.prepared.lock().len())
            .finish_non_exhaustive()
    }
}

impl HearthFlightSql {
    pub fn new(query: Arc<QueryService>, auth: Authenticator) -> Self {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "Hearth");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "59");
        info.append(SqlInfo::FlightSqlServerReadOnly, true);
        info.append(SqlInfo::FlightSqlServerSql, true);
        info.append(SqlInfo::FlightSqlServerSubstrait, false);
        info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        HearthFlightSql {
            query,
            auth,
            prepared: Mutex::new(HashMap::new()),
            sql_info: info.build().expect("static sql info"),
        }
    }

    /// The `FlightInfo` of a metadata command: its result schema, and itself as the ticket.
    fn command_info(
        &self,
        command: &impl ProstMessageExt,
        schema: &Schema,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.auth.tenant(request.metadata())?;
        flight_info(
            schema,
            Ticket::new(command.as_any().encode_to_vec()),
            request.into_inner(),
        )
    }

    fn prepared(&self, handle: &[u8], tenant: &TenantId) -> Result<Prepared, Status> {
        self.prepared
            .lock()
            .get(handle)
            .filter(|p| &p.tenant == tenant)
            .cloned()
            .ok_or_else(|| Status::not_found("no such prepared statement"))
    }

    async fn run(
        &self,
        tenant: &TenantId,
        sql: &str,
        parameters: Vec<ScalarValue>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut timer = self.query.metrics().timer("flight_sql", "statement");
        // Counted against the tenant's outstanding queries until the last batch is sent or
        // the client goes away; waits while the tenant runs its most statements at once.
        let admitted = match self.query.admission().admit_statement(tenant).await {
            Ok(admitted) => admitted,
            Err(e) => {
                timer.failed();
                return Err(status::from_query(e));
            }
        };
        let stream = match self.query.sql_stream(tenant, sql, parameters).await {
            Ok(stream) => stream,
            Err(e) => {
                timer.failed();
                return Err(status::from_query(e));
            }
        };
        let schema = stream.schema();
        // Timed until the last batch is sent (or the client goes away).
        let stream = stream.inspect_err(move |_| {
            let _held = &admitted;
            timer.failed()
        });
        Ok(encode(
            Arc::clone(&schema),
            Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
        ))
    }
}

#[tonic::async_trait]
impl FlightSqlService for HearthFlightSql {
    type FlightService = HearthFlightSql;

    /// Basic auth whose password is a configured token answers that token; without tokens
    /// configured, any handshake succeeds (no authentication is needed).
    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let mut token = String::new();
        if self.auth.requires_token() {
            let header = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let candidate = match header.split_once(' ') {
                Some(("Bearer" | "bearer", t)) => t.trim().to_string(),
                Some(("Basic" | "basic", encoded)) => {
                    decode_basic_password(encoded.trim()).unwrap_or_default()
                }
                _ => String::new(),
            };
            if self.auth.token_tenant(&candidate).is_none() {
                return Err(Status::unauthenticated("unknown credentials"));
            }
            token = candidate;
        }
        let response = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let mut response: Response<
            Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>,
        > = Response::new(Box::pin(futures::stream::iter(vec![Ok(response)])));
        if !token.is_empty()
            && let Ok(value) = format!("Bearer {token}").parse()
        {
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let tenant = self.auth.tenant(request.metadata())?;
        let planned = self
            .query
            .sql_schema(&tenant, &query.query)
            .await
            .map_err(status::from_query)?;
        let ticket = TicketStatementQuery {
            statement_handle: query.query.clone().into_bytes().into(),
        };
        let ticket = Ticket::new(ticket.as_any().encode_to_vec());
        flight_info(&planned.schema, ticket, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let tenant = self.auth.tenant(request.metadata())?;
        let sql = String::from_utf8(ticket.statement_handle.to_vec())
            .map_err(|_| Status::invalid_argument("statement handle is not UTF-8"))?;
        self.run(&tenant, &sql, Vec::new()).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let tenant = self.auth.tenant(request.metadata())?;
        let planned = self
            .query
            .sql_schema(&tenant, &query.query)
            .await
            .map_err(status::from_query)?;
        let handle = uuid::Uuid::new_v4().to_string().into_bytes();
        self.prepared.lock().insert(
            handle.clone(),
            Prepared {
                tenant,
                sql: query.query,
                parameters: Vec::new(),
            },
        );
        let parameter_schema = if planned.parameters.fields().is_empty() {
            Default::default()
        } else {
            schema_bytes(&planned.parameters)?
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            dataset_schema: schema_bytes(&planned.schema)?,
            parameter_schema,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let tenant = self.auth.tenant(request.metadata())?;
        let handle = query.prepared_statement_handle.to_vec();
        self.prepared(&handle, &tenant)?;
        let data = request.into_inner().map_err(FlightError::from);
        let batches: Vec<arrow::array::RecordBatch> =
            FlightRecordBatchStream::new_from_flight_data(data)
                .try_collect()
                .await
                .map_err(Status::from)?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows > 1 {
            return Err(Status::invalid_argument(format!(
                "bind one row of parameters at a time; got {rows}"
            )));
        }
        let parameters = match batches.iter().find(|b| b.num_rows() == 1) {
            Some(batch) => batch
                .columns()
                .iter()
                .map(|column| ScalarValue::try_from_array(column, 0))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Status::invalid_argument(e.to_string()))?,
            None => Vec::new(),
        };
        if let Some(prepared) = self.prepared.lock().get_mut(&handle) {
            prepared.parameters = parameters;
        }
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.into()),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let tenant = self.auth.tenant(request.metadata())?;
        let prepared = self.prepared(&query.prepared_statement_handle, &tenant)?;
        let planned = self
            .query
            .sql_schema(&tenant, &prepared.sql)
            .await
            .map_err(status::from_query)?;
        let ticket = Ticket::new(query.as_any().encode_to_vec());
        flight_info(&planned.schema, ticket, request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let tenant = self.auth.tenant(request.metadata())?;
        let prepared = self.prepared(&query.prepared_statement_handle, &tenant)?;
        self.run(&tenant, &prepared.sql, prepared.parameters).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let tenant = self.auth.tenant(request.metadata())?;
        let handle = query.prepared_statement_handle.to_vec();
        self.prepared(&handle, &tenant)?;
        self.prepared.lock().remove(&handle);
        Ok(())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        self.command_info(&query, &schema, request)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.auth.tenant(request.metadata())?;
        encode_batch(query.into_builder(&self.sql_info).build())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.command_info(&query, &schema, request)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.auth.tenant(request.metadata())?;
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        encode_batch(builder.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.command_info(&query, &schema, request)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.auth.tenant(request.metadata())?;
        let mut builder = query.into_builder();
        builder.append(CATALOG, SCHEMA);
        encode_batch(builder.build())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.command_info(&query, &schema, request)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.auth.tenant(request.metadata())?;
        let mut builder = query.into_builder();
        for (name, schema) in self.query.sql_tables() {
            builder
                .append(CATALOG, SCHEMA, name, "TABLE", &schema)
                .map_err(Status::from)?;
        }
        encode_batch(builder.build())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.command_info(&query, &schema, request)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.auth.tenant(request.metadata())?;
        let mut builder = query.into_builder();
        builder.append("TABLE");
        encode_batch(builder.build())
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<DoGetStream>, Status> {
        Err(Status::unimplemented(format!(
            "unsupported Flight SQL ticket {}",
            message.type_url
        )))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// The password of HTTP Basic credentials (`user:password`, base64, padded or not).
fn decode_basic_password(encoded: &str) -> Option<String> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const BASE64: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let text = String::from_utf8(BASE64.decode(encoded).ok()?).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_string())
}

#[cfg(test)]
mod tests {
    use super::decode_basic_password;

    #[test]
    fn basic_credentials() {
        // "user:s3cret"
        assert_eq!(
            decode_basic_password("dXNlcjpzM2NyZXQ=").as_deref(),
            Some("s3cret")
        );
        assert_eq!(decode_basic_password("!!!"), None);
    }
}
