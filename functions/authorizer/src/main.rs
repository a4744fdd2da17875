//! Lambda authorizer for the HTTP API (REQUEST type, simple responses, identity `x-api-key`).

use aws_lambda_events::apigw::{ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    argus_api::telemetry::init_lambda();
    let backend = argus_core::Backend::from_lambda_env().await?;
    let backend = &backend;
    run(service_fn(move |event: LambdaEvent<ApiGatewayV2CustomAuthorizerV2Request>| async move {
        let key = argus_api::authorizer::api_key_from_headers(&event.payload.headers);
        // A DynamoDB failure is an error (API Gateway answers 500), never an allow.
        let decision = argus_api::authorizer::authorize(backend, key).await?;
        Ok::<ApiGatewayV2CustomAuthorizerSimpleResponse, Error>(argus_api::authorizer::simple_response(&decision))
    }))
    .await
}
