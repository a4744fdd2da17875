"""Independent check of `argus-bench analytics` (issue 12): reads every event of the bench stream
with boto3 (1,000-item Query pages), folds hourly counts per event type and the sum of data.n, and
compares them with the aggregates the bench saved (ARGUS_BENCH_ANALYTICS_ANSWERS).

Usage: analytics_fold.py ANSWERS.json TENANT TABLE EVENTS
(DynamoDB at $ARGUS_DYNAMODB_ENDPOINT, default http://127.0.0.1:8000; the stream's 8 default
write shards, as the bench writes them). Exits 1 unless EVENTS events are read and both
aggregates equal the fold.
"""
import os, boto3, json, sys, time, collections, datetime
answers = json.load(open(sys.argv[1])); tenant = sys.argv[2]
d = boto3.client('dynamodb', endpoint_url=os.environ.get('ARGUS_DYNAMODB_ENDPOINT', 'http://127.0.0.1:8000'), region_name='us-east-1',
                 aws_access_key_id='local', aws_secret_access_key='local')
table = sys.argv[3]; expected = int(sys.argv[4])
now = int(time.time())
start, end = answers['window']['start'], answers['window']['end']
def hour(ts):
    t = datetime.datetime.strptime(ts[:19], '%Y-%m-%dT%H:%M:%S').replace(minute=0, second=0)
    return t.strftime('%Y-%m-%dT%H:%M:%S')
fold = collections.Counter(); total = 0; n_sum = 0; requests = 0
t0 = time.time()
for shard in range(8):
    kw = dict(TableName=table, IndexName='GSI4', Limit=1000,
              KeyConditionExpression='GSI4PK = :p AND GSI4SK BETWEEN :a AND :b',
              ExpressionAttributeValues={':p': {'S': f'T#{tenant}#ST#bench-analytics#{shard:02d}'},
                                         ':a': {'S': start}, ':b': {'S': end}})
    while True:
        r = d.query(**kw); requests += 1
        for it in r['Items']:
            if 'deleted_at' in it: continue
            if 'expires_at' in it and int(it['expires_at']['N']) <= now: continue  # as the API hides them
            ts = it['timestamp']['S']
            if not (start <= ts < end): continue
            fold[(hour(ts), it['name']['S'])] += 1
            total += 1
            n_sum += json.loads(it['data']['S']).get('n', 0)
        if 'LastEvaluatedKey' not in r: break
        kw['ExclusiveStartKey'] = r['LastEvaluatedKey']
elapsed = time.time() - t0
answered = collections.Counter()
for row in answers['by_type_hourly']['results']:
    answered[(row['interval_start'][:19], row['group'])] = row['values'][0]['value']
sum_value = answers['sum_avg']['results'][0]['values'][0]['value']
avg_value = answers['sum_avg']['results'][0]['values'][1]['value']
print(f'read {total} events in {elapsed:.1f} s ({requests} Query calls of up to 1,000 items)')
print(f'by type, hourly: {len(fold)} rows folded, {len(answered)} answered, equal: {fold == answered}')
print(f'sum of data.n: fold {n_sum}, answer {sum_value}, equal: {n_sum == sum_value}')
avg_equal = abs(n_sum / max(total, 1) - avg_value) <= 1e-9 * max(avg_value, 1)
print(f'avg of data.n: fold {n_sum / max(total, 1)}, answer {avg_value}, equal: {avg_equal}')
sys.exit(0 if total == expected and fold == answered and n_sum == sum_value and avg_equal else 1)
