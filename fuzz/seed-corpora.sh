#!/usr/bin/env bash
# Writes the original seeds (seed-*) of fuzz/corpus/<target> from the reference vectors of
# shared/src. Run once for a new target; `make fuzz` minimises them into the corpus.
set -euo pipefail
cd "$(dirname "$0")"
C=corpus
w() { mkdir -p "$C/$1"; printf '%s' "$3" > "$C/$1/seed-$2"; }
wx() { mkdir -p "$C/$1"; printf "$3" > "$C/$1/seed-$2"; }   # printf escapes (binary)

ID=3f2504e0-4f89-41d3-9a0c-0305e82c3301
B='"protocol":"helios-starling","version":"1.0.0","timestamp":1704700800000'
w helios request "{$B,\"type\":\"request\",\"requestId\":\"$ID\",\"method\":\"chat:send\",\"payload\":{\"a\":[1,2,{\"b\":null}],\"s\":\"é\\\"\\n\"},\"timeoutMs\":5000,\"~timing\":{\"delay_milli\":100}}"
w helios request-min "{$B,\"type\":\"request\",\"requestId\":\"$ID\",\"method\":\"system:ping\"}"
w helios success "{$B,\"type\":\"response\",\"requestId\":\"$ID\",\"success\":true,\"data\":{\"token\":\"t\",\"expiresIn\":3600},\"~timing\":{\"in_time\":\"2019-01-23 18:03:27.123Z\"}}"
w helios error "{$B,\"type\":\"response\",\"requestId\":\"$ID\",\"success\":false,\"error\":{\"code\":\"METHOD_ERROR\",\"message\":\"bad\",\"details\":{\"field\":\"x\"}}}"
w helios notification "{$B,\"type\":\"notification\",\"requestId\":null,\"notification\":{\"topic\":\"news\",\"data\":[1,2]}}"
w helios progress "{\"protocol\":\"helios-starling\",\"version\":\"1.0.0\",\"timestamp\":1.5,\"type\":\"notification\",\"requestId\":\"3F2504E0-4F89-41D3-9A0C-0305E82C3301\",\"notification\":{\"data\":{\"n\":1}},\"~timing\":{\"out_time\":\"2024-01-08T00:00:00Z\"}}"
w helios bad "{\"protocol\":\"x\",\"version\":\"1.0\",\"timestamp\":-1,\"type\":\"request\",\"requestId\":\"$ID\",\"method\":\"9bad\",\"timeoutMs\":0,\"~timing\":5}"
w helios protocol-error "{$B,\"type\":\"error\",\"error\":{\"code\":\"INVALID_MESSAGE_FORMAT\",\"message\":\"m\",\"details\":{\"violations\":[]}}}"

w chat authenticate '{"cdid":7,"type":"authenticate","user-id":42,"device-id":"phone&aa:bb","token":"t"}'
w chat direct-info '{"cdid":"c","type":"request-direct-session-info","user-id":"bob"}'
w chat create '{"type":"request-mutable-session-creation","user-id":["a","a",1,"1"]}'
w chat modify '{"cdid":"c","type":"request-mutable-session-modification","session-id":"g1","user-id":["a","b"]}'
w chat delete '{"type":"request-mutable-session-deletion","session-id":"g1"}'
w chat list '{"type":"request-mutable-session-listing"}'
w chat send '{"cdid":"c","type":"request-sending-a-message","session-id":"direct-NTphbGljZWJvYg","message":{"type":"text","body":"hi"},"sender-timestamp":1,"~timing":{"delay_milli":5}}'
w chat history '{"type":"request-message-history","session-id":"s","limit":100000,"since-message-id":"5-0"}'
w chat batch '{"cdid":"b","type":"batch-mode-action","actions":[{"type":"request-mutable-session-listing","cdid":"1"},{"type":"request-direct-session-info","user-id":"x"},5]}'
w chat direct-id 'direct-NTphbGljZWJvYg'
wx chat pair 'alice\x00bob'

w timestick start '{"action":"START","protocol":"TimeStick","version":"0.1","caller_id":"client-123","requested_uri":"timestick://api.example.com/chat","capabilities":{"max_message_size":65535,"supports_binary":false,"supports_notifications":true}}'
w timestick start-bad '{"action":"START","protocol":"TimeStick","version":"9.9","caller_id":"c","requested_uri":"timestick://x/a/../b","capabilities":{"max_message_size":0}}'
w timestick request '{"type":"request","session_id":"s1","message_id":"m1","payload":{"k":1},"~timing":{"delay_milli":5}}'
w timestick response '{"type":"response","session_id":"s1","message_id":"m2","correlation_id":"x","payload":null}'
w timestick kill '{"type":"control","session_id":"s1","message_id":"m3","payload":{"action":"KILL","kill_level":3,"reason":"r"}}'
w timestick stop '{"type":"control","session_id":"s1","message_id":"m4","payload":{"action":"STOP"}}'
w timestick uri 'timestick://example.net:8443/room/123'
w timestick target '/room/123/'
w timestick cursor '1700000000000-3.17'

wx sink_frame conn-request '\x00\x06v1.0.0\x00\x00\x00\x01\x00\x00\x00\x02'
wx sink_frame conn-request-v3 '\x03\xff'
wx sink_frame connected '\x10'
wx sink_frame hello '\x11\xff\xff\xff\xff'
wx sink_frame quarantined '\x13\x02\x01\x02maintenance'
wx sink_frame ack '\x3f\xff'
wx sink_frame ping '\x50\x00'
wx sink_frame publish '\x4f\xff\x01\x06\x02\x02\x03\x04\xed\x85\xcc\x83\x06\x01\x05'
wx sink_frame nack '\x71\x23\x02\x01\xf4bad'
wx sink_frame stream '\x00\x02\x50\x00\x00\x02\x30\x07\x00\x0f\x4f\xff\x01\x06\x02\x02\x03\x04\xed\x85\xcc\x83\x06\x01\x05\x00\x00'

wx sink_leb128 zero '\x00'
wx sink_leb128 300 '\xac\x02'
wx sink_leb128 ts '\xed\x85\xcc\x83\x06'
wx sink_leb128 max '\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01'
wx sink_leb128 overflow '\x80\x80\x80\x80\x80\x80\x80\x80\x80\x02'
wx sink_leb128 noncanonical '\x80\x00\x81\x80\x00'

w timing_timestamp aca-py '2019-05-17 20:51:19.519437Z'
w timing_timestamp minutes '2019-05-17 20:51Z'
w timing_timestamp no-zone '2019-11-15T22:37:14'
w timing_timestamp offset '2019-05-17 20:51:19.519437+01:00'
w timing_timestamp offset-compact '2019-05-17T20:51:19.519437+0000'
w timing_timestamp offset-hours '1970-01-01T00:00:00+01'
w timing_timestamp comma '1970-01-01T00:00:00,0009995Z'
w timing_timestamp formatted '2019-01-23T18:03:27.123Z'
w timing_timestamp leap '2020-02-29 00:00:60-23:59'

NOW8='\x18\x38\x8e\xcd\x6a\x01\x00\x00'   # 1558126279000 little-endian
wx timing_decorator full "${NOW8}"'{"in_time":"2019-01-23 18:03:27.123Z","out_time":"2019-01-23 18:03:27.123Z","stale_time":"2019-01-24 18:25Z","expires_time":"2019-01-25 18:25Z","delay_milli":12345,"wait_until_time":"2019-01-24 00:00Z","x-custom":[1]}'
wx timing_decorator hold "${NOW8}"'{"delay_milli":9000,"wait_until_time":"2019-05-17T20:51:24.000Z"}'
wx timing_decorator expired "${NOW8}"'{"expires_time":"2019-05-17T20:51:18.999Z","stale_time":"2019-05-17T20:51:18.999Z"}'
wx timing_decorator too-long "${NOW8}"'{"delay_milli":600001}'
w timing_decorator empty '{}'

N='"origin_node":"n1","created_ms":1704700800000'
w envelope request "{\"id\":\"$ID\",\"kind\":\"request\",\"to\":{\"t\":\"session\",\"v\":\"$ID\"},\"from\":{\"session\":\"$ID\",\"user\":\"u\",\"protocol\":\"helios\"},\"reply_to\":{\"node\":\"n1\",\"to\":{\"t\":\"reply\",\"v\":7}},\"correlation\":\"c-1\",\"subject\":\"chat:send\",\"body\":{\"t\":\"json\",\"v\":{\"a\":[1,2,3]}},\"timing\":{\"delay_milli\":5},$N}"
w envelope bytes "{\"id\":\"$ID\",\"kind\":\"response\",\"to\":{\"t\":\"reply\",\"v\":1},\"body\":{\"t\":\"bytes\",\"v\":[0,255,7]},$N}"
w envelope error "{\"id\":\"$ID\",\"kind\":\"response\",\"to\":{\"t\":\"user\",\"v\":\"bob\"},\"body\":{\"t\":\"error\",\"v\":{\"code\":\"X\",\"message\":\"m\",\"details\":[1.5,-0.0]}},$N}"
w envelope channel "{\"id\":\"$ID\",\"kind\":\"notification\",\"to\":{\"t\":\"channel\",\"v\":\"news\"},\"from\":{},\"body\":{\"t\":\"json\",\"v\":null},$N}"
w envelope control "{\"id\":\"$ID\",\"kind\":\"control\",\"to\":{\"t\":\"session\",\"v\":\"$ID\"},\"body\":{\"t\":\"json\",\"v\":{\"op\":\"cancel\"}},$N}"
wx envelope seq '1700000000000-3\x001700000000000-10'
wx wsframe messages '\x06\x21\x81\x85\x11\x22\x33\x44\x79\x47\x5f\x28\x7e\x82\x84\x11\x22\x33\x44\x11\x23\x31\xbb\x89\x81\x11\x22\x33\x44\x61\x8a\x80\x11\x22\x33\x44\x88\x84\x11\x22\x33\x44\x12\xca\x5c\x2f'
wx wsframe fragments '\x05\x00\x01\x83\x11\x22\x33\x44\x79\x47\x5f\x89\x81\x11\x22\x33\x44\x69\x00\x83\x11\x22\x33\x44\x7d\x4d\x13\x80\x86\x11\x22\x33\x44\x66\xe1\x85\x36\x7d\x46'
wx wsframe utf8-split '\x06\x11\x01\x81\x11\x22\x33\x44\xd2\x80\x81\x11\x22\x33\x44\xb8'
wx wsframe len16 '\x08\x73\x82\xfe\x01\x2c\x11\x22\x33\x44\x11\x23\x31\x47\x15\x27\x35\x43\x19\x2b\x39\x4f\x1d\x2f\x3d\x4b\x01\x33\x21\x57\x05\x37\x25\x53\x09\x3b\x29\x5f\x0d\x3f\x2d\x5b\x31\x03\x11\x67\x35\x07\x15\x63\x39\x0b\x19\x6f\x3d\x0f\x1d\x6b\x21\x13\x01\x77\x25\x17\x05\x73\x29\x1b\x09\x7f\x2d\x1f\x0d\x7b\x51\x63\x71\x07\x55\x67\x75\x03\x59\x6b\x79\x0f\x5d\x6f\x7d\x0b\x41\x73\x61\x17\x45\x77\x65\x13\x49\x7b\x69\x1f\x4d\x7f\x6d\x1b\x71\x43\x51\x27\x75\x47\x55\x23\x79\x4b\x59\x2f\x7d\x4f\x5d\x2b\x61\x53\x41\x37\x65\x57\x45\x33\x69\x5b\x49\x3f\x6d\x5f\x4d\x3b\x91\xa3\xb1\xc7\x95\xa7\xb5\xc3\x99\xab\xb9\xcf\x9d\xaf\xbd\xcb\x81\xb3\xa1\xd7\x85\xb7\xa5\xd3\x89\xbb\xa9\xdf\x8d\xbf\xad\xdb\xb1\x83\x91\xe7\xb5\x87\x95\xe3\xb9\x8b\x99\xef\xbd\x8f\x9d\xeb\xa1\x93\x81\xf7\xa5\x97\x85\xf3\xa9\x9b\x89\xff\xad\x9f\x8d\xfb\xd1\xe3\xf1\x87\xd5\xe7\xf5\x83\xd9\xeb\xf9\x8f\xdd\xef\xfd\x8b\xc1\xf3\xe1\x97\xc5\xf7\xe5\x93\xc9\xfb\xe9\x9f\xcd\xff\xed\x9b\xf1\xc3\xd1\xa7\xf5\xc7\xd5\xa3\xf9\xcb\xd9\xaf\xfd\xcf\xdd\xab\xe1\xd3\xc1\xb7\xe5\xd7\xc5\xb3\xe9\xdb\xc9\x44\x10\x20\x30\x40\x14\x24\x34\x4c\x18\x28\x38\x48\x1c\x2c\x3c\x54\x00\x30\x20\x50\x04\x34\x24\x5c\x08\x38\x28\x58\x0c\x3c\x2c\x64\x30\x00\x10\x60\x34\x04\x14\x6c\x38\x08\x18\x68\x3c\x0c\x1c\x74'
wx wsframe huge-declared '\x06\x00\x81\xff\x00\x00\x01\x00\x00\x00\x00\x00\x01\x02\x03\x04'
wx wsframe limit '\x02\x00\x01\x86\x11\x22\x33\x44\x70\x43\x52\x25\x70\x43\x80\x85\x11\x22\x33\x44\x70\x43\x52\x25\x70'
wx wsframe close-empty '\x00\x00\x88\x80\x11\x22\x33\x44'
wx wsframe bad-close '\x06\x00\x88\x82\x11\x22\x33\x44\x12\xcf'
wx wsframe unmasked '\x06\x00\x81\x01\x78'
CH="{\"id\":\"$ID\",\"kind\":\"notification\",\"to\":{\"t\":\"channel\",\"v\":\"news\"},\"body\":{\"t\":\"json\",\"v\":{\"n\":1}},$N}"
w envelope channel-payload "1700000000000-3 5 e1 $CH"
w envelope channel-payload-max "1-0 18446744073709551615 e1 $CH"
w envelope channel-payload-unkept "- $CH"
w timestick path '/timestick/room/1'
w timestick path-escaped '/timestick/a%2Fb/%C3%A9'
w timestick path-start '/timestick/%73tart'
