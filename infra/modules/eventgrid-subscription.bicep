metadata description = 'Subscription delivering appliance events to the Event Grid-triggered function, with bounded retries and identity-based dead-lettering to a blob container.'

@description('Name of the existing topic.')
param topicName string

@description('Subscription name.')
param name string

@description('Resource ID of the Function App.')
param functionAppId string

@description('Name of the Event Grid-triggered function (functions/: on_appliance_event).')
param functionName string

@description('Event types delivered; anything else published to the topic is not delivered.')
param includedEventTypes array

@description('Delivery schema; must match the topic input schema.')
@allowed([
  'EventGridSchema'
  'CloudEventSchemaV1_0'
])
param deliverySchema string

@description('Delivery attempts before dead-lettering (Event Grid allows 1-30).')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int

@description('Minutes an event is retried before dead-lettering (Event Grid allows 1-1440).')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int

@description('Events per delivery. 1 means a failing event is retried alone instead of redelivering a whole batch (the Functions extension answers 500 for a batch if any event fails).')
@minValue(1)
@maxValue(5000)
param maxEventsPerBatch int

@description('Resource ID of the storage account holding the dead-letter container.')
param deadLetterStorageAccountId string

@description('Blob container receiving dead-lettered events.')
param deadLetterContainerName string

resource topic 'Microsoft.EventGrid/topics@2025-02-15' existing = {
  name: topicName
}

resource subscription 'Microsoft.EventGrid/topics/eventSubscriptions@2025-02-15' = {
  parent: topic
  name: name
  properties: {
    // AzureFunction destination: Event Grid resolves the function's key through ARM at delivery time, so
    // no function key ever appears in the template, the deployment history or the subscription.
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${functionName}'
        maxEventsPerBatch: maxEventsPerBatch
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: deliverySchema
    filter: {
      includedEventTypes: includedEventTypes
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

@description('Resource ID of the event subscription.')
output id string = subscription.id
