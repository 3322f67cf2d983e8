// node-smpp (npm "smpp", pinned in package.json) as a third-party ESME against the
// gateway: bind_transceiver, one submit_sm asking for a receipt, then answer each
// deliver_sm (the receipt, then whatever the test has the gateway send) and unbind
// after the given number of them. One JSON line per event on stdout for the test.
// usage: node smpp_client.js PORT SYSTEM_ID PASSWORD SOURCE DESTINATION TEXT DELIVERIES
'use strict';

const smpp = require('smpp');

const [port, systemId, password, source, destination, text, deliveries] =
  process.argv.slice(2);
const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n');
let delivered = 0;

const session = smpp.connect({ url: `smpp://127.0.0.1:${port}` });

session.on('connect', () => {
  session.bind_transceiver({ system_id: systemId, password: password }, (bindResp) => {
    emit({ event: 'bound', status: bindResp.command_status });
    if (bindResp.command_status !== 0) {
      session.close();
      return;
    }
    session.submit_sm(
      {
        source_addr_ton: 1,
        source_addr_npi: 1,
        source_addr: source,
        dest_addr_ton: 1,
        dest_addr_npi: 1,
        destination_addr: destination,
        registered_delivery: 1,
        // Explicit: node-smpp's default labels GSM 03.38 octets as 0x01 (IA5).
        data_coding: 0,
        short_message: text,
      },
      (resp) => emit({ event: 'submit_sm_resp', status: resp.command_status, message_id: resp.message_id }),
    );
  });
});

session.on('deliver_sm', (pdu) => {
  session.send(pdu.response());
  emit({
    event: 'deliver_sm',
    esm_class: pdu.esm_class,
    source_addr: pdu.source_addr,
    destination_addr: pdu.destination_addr,
    short_message: pdu.short_message.message,
    receipted_message_id: pdu.receipted_message_id ?? null,
    message_state: pdu.message_state ?? null,
  });
  delivered += 1;
  if (delivered === Number(deliveries)) {
    session.unbind((resp) => {
      emit({ event: 'unbound', status: resp.command_status });
      session.close();
    });
  }
});

session.on('close', () => process.exit(0));
session.on('error', (error) => {
  emit({ event: 'error', message: String(error) });
  process.exit(1);
});
